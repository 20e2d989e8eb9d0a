//! The HTTPS server of the webhooks, on its own port: `POST
//! /validate/<registration>`, `/mutate/<registration>`,
//! `/mutate-related/<registration>` and
//! `/validate-registrations` take an AdmissionReview v1 and answer one. TLS by rustls with the certificate
//! [`ServingCert`] holds now; each connection is handshaken and served in
//! its own task, so a slow client holds up nobody else.

use super::accounts;
use super::certs::ServingCert;
use super::review::{self, Hook};
use super::{AdmissionError, Targets};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kube::api::DynamicObject;
use kube::core::admission::AdmissionReview;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// The largest AdmissionReview read: an object and its old version, each
/// up to etcd's 1.5 MiB, with room.
const MAX_REVIEW_BYTES: usize = 8 << 20;
/// How long a client may take for its TLS handshake.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);

/// What the routes answer from.
#[derive(Clone)]
struct AppState {
    targets: Targets,
    /// The host's client, for the registrations check.
    client: kube::Client,
}

/// The routes, over the registrations served now.
fn router(targets: Targets, client: kube::Client) -> Router {
    Router::new()
        .route("/validate/{registration}", post(validate))
        .route("/mutate/{registration}", post(mutate))
        .route("/mutate-related/{registration}", post(mutate_related))
        .route(accounts::PATH, post(registrations))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(MAX_REVIEW_BYTES))
        .with_state(AppState { targets, client })
}

async fn validate(State(state): State<AppState>, Path(registration): Path<String>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(review) => {
            reply(&review::answer(Hook::Validate, &registration, state.targets.get(&registration), review).await)
        }
        Err(refused) => *refused,
    }
}

async fn mutate(State(state): State<AppState>, Path(registration): Path<String>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(review) => {
            reply(&review::answer(Hook::Mutate, &registration, state.targets.get(&registration), review).await)
        }
        Err(refused) => *refused,
    }
}

async fn mutate_related(State(state): State<AppState>, Path(registration): Path<String>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(review) => reply(
            &review::answer(
                Hook::MutateRelated,
                &registration,
                state.targets.get(&registration),
                review,
            )
            .await,
        ),
        Err(refused) => *refused,
    }
}

async fn registrations(State(state): State<AppState>, body: Bytes) -> Response {
    match parse(&body) {
        Ok(review) => reply(&accounts::answer(&state.client, review).await),
        Err(refused) => *refused,
    }
}

fn parse(body: &[u8]) -> Result<AdmissionReview<DynamicObject>, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new((StatusCode::BAD_REQUEST, format!("not an AdmissionReview: {e}")).into_response()))
}

fn reply(answer: &AdmissionReview<DynamicObject>) -> Response {
    match serde_json::to_vec(answer) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Binds `addr` (before anything else starts, so a taken port is a clear
/// error at once).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AdmissionError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AdmissionError::Bind { addr, source })
}

/// Serves the webhooks on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    cert: ServingCert,
    targets: Targets,
    client: kube::Client,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), AdmissionError> {
    let acceptor = TlsAcceptor::from(Arc::new(super::certs::server_config(cert)?));
    let app = router(targets, client);
    let addr = listener.local_addr().ok();
    tracing::info!(addr = ?addr, "serving admission webhooks");
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "webhook accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let served = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
}
