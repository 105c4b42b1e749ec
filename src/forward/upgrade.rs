//! Relaying an upgraded connection (WebSocket and other `Upgrade`s) after a `101`.
//!
//! Both halves come from hyper: the client's from the server connection (an
//! [`OnUpgrade`](hyper::upgrade::OnUpgrade) request extension, present when the server was
//! built with upgrades), the target's from the client's `101` response. The target's response
//! body, which holds the balancer's in-flight count, is moved into the relay task so the
//! target stays counted until both directions are closed.

use http::{Extensions, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// The client's half of an upgrade, taken from the request.
#[derive(Debug)]
pub(crate) struct ClientSide(OnUpgrade);

/// Takes the client's half, if the server offers one.
pub(crate) fn take(extensions: &mut Extensions) -> Option<ClientSide> {
    extensions.remove::<OnUpgrade>().map(ClientSide)
}

/// Starts relaying bytes between the client and the target of `rsp` (a `101`), holding
/// `hold` until both directions are done. Returns `hold` back if no relay can start (no Tokio
/// runtime, or the response carries no upgrade).
pub(crate) fn relay<B, H>(client: ClientSide, rsp: &mut Response<B>, hold: H) -> Result<(), H>
where
    H: Send + 'static,
{
    if rsp.extensions().get::<OnUpgrade>().is_none() {
        return Err(hold);
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return Err(hold);
    };
    let target = hyper::upgrade::on(rsp);
    rt.spawn(async move {
        let (client, target) = futures_util::future::join(client.0, target).await;
        match (client, target) {
            (Ok(client), Ok(target)) => {
                let mut client = TokioIo::new(client);
                let mut target = TokioIo::new(target);
                match tokio::io::copy_bidirectional(&mut client, &mut target).await {
                    Ok((up, down)) => tracing::trace!(up, down, "upgraded connection closed"),
                    Err(error) => tracing::debug!(%error, "upgraded connection broke off"),
                }
            }
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%error, "upgrade failed");
            }
        }
        drop(hold);
    });
    Ok(())
}
