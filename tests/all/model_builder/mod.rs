//! The model builder: locally, and the whole chain on AWS against moto.

mod aws;
mod local;
