//! The AWS adapters and the control plane against moto: the registry, the spool, IAM (simulated and as recorded), cleanup, the deployable package.

pub(crate) mod calls;
mod cleanup;
mod control_plane;
pub(crate) mod iam;
mod iam_recorded;
mod package;
mod registry;
mod spool;
