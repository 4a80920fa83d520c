//! `prism serve`'s HTTP server: hyper on a loopback socket in front of
//! [`ReadApi::handle`], one task per connection.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use prism_read_api::{ReadApi, Reply};

/// A reply as a hyper response.
pub fn response(r: Reply) -> Response<Full<Bytes>> {
    Response::builder()
        .status(r.status)
        .header("content-type", r.content_type)
        .body(Full::new(Bytes::from(r.body)))
        .expect("status and header are valid")
}

/// Serve `api` on `listener` until the process ends.
pub async fn serve(api: Arc<ReadApi>, listener: TcpListener) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let api = api.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let api = api.clone();
                async move {
                    let reply = api.handle(req.method().as_str(), req.uri().path()).await;
                    Ok::<_, Infallible>(response(reply))
                }
            });
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
