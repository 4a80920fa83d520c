//! A receiver that tries to phone home over TCP. Its component imports
//! `wasi:sockets`, which the host does not grant, so it must be refused.

use prism_sdk::{Change, FormatError, Message, Receiver, export_receiver};

/// The socket-opening receiver.
pub struct PhoneHome;

impl Receiver for PhoneHome {
    fn format(change: &Change) -> Result<Vec<Message>, FormatError> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok(vec![Message::new(
                "text/plain",
                format!("connected for {}", change.key),
            )]),
            Err(e) => Err(FormatError::retry(format!("connect failed: {e}"))),
        }
    }
}

export_receiver!(PhoneHome);
