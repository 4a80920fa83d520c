//! SQS as the stream processor's delivery (a sink per batch), and a queue's
//! URL from its name.

use std::collections::HashMap;
use std::sync::Arc;

use aws_sdk_sqs::Client;
use prism_core::sink::{Delivery, Sink};
use prism_types::manifest::Destination;

use super::SqsSink;
use crate::claims::ClaimStore;

/// SQS as the stream processor's [`Delivery`]: one [`SqsSink`] per batch.
#[derive(Debug, Clone)]
pub struct SqsDelivery {
    /// The SQS client.
    pub client: Client,
    /// Where dead letters over SQS's limit put their change.
    pub claims: Option<ClaimStore>,
    /// Calls in flight at once per sink (one sink per stream batch or tick).
    pub in_flight: usize,
    /// Calls in flight at once to one queue.
    pub in_flight_per_queue: usize,
}

impl Delivery for SqsDelivery {
    fn sink(&self, destinations: HashMap<String, Destination>) -> Arc<dyn Sink> {
        Arc::new(
            SqsSink::new(
                self.client.clone(),
                tokio::runtime::Handle::current(),
                destinations,
            )
            .with_claims(self.claims.clone())
            .with_in_flight(self.in_flight)
            .with_in_flight_per_queue(self.in_flight_per_queue),
        )
    }
}

/// The URL of a queue given by name or URL (`GetQueueUrl` for a name).
/// The error is SQS's, without the queue's name.
pub async fn queue_url(client: &aws_sdk_sqs::Client, queue: &str) -> Result<String, String> {
    if queue.starts_with("https://") || queue.starts_with("http://") {
        return Ok(queue.to_owned());
    }
    client
        .get_queue_url()
        .queue_name(queue)
        .send()
        .await
        .map_err(|e| crate::sdk_error(&e))?
        .queue_url
        .ok_or_else(|| "no URL returned".to_owned())
}
