use super::{CheckFuture, HealthCheck};
use crate::error::ConnectFailed;
use crate::target::Target;

/// Passes when a TCP connection to the target's address can be opened (then closes it).
///
/// The lightest check there is: it proves the port accepts connections, not that the service
/// behind it works. Host names are resolved on every check.
///
/// # Examples
///
/// ```
/// use tower_lb::health::{ActiveCheck, TcpCheck};
///
/// let check = ActiveCheck::builder(TcpCheck::new()).build()?;
/// # Ok::<(), tower_lb::health::InvalidHealthConfig>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct TcpCheck {
    _p: (),
}

impl TcpCheck {
    /// A TCP connect check.
    pub fn new() -> Self {
        TcpCheck { _p: () }
    }
}

impl HealthCheck for TcpCheck {
    fn check<'a>(&'a self, target: &'a Target) -> CheckFuture<'a> {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(target.address().as_str())
                .await
                .map_err(ConnectFailed::new)?;
            drop(stream);
            Ok(())
        })
    }
}
