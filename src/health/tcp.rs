use super::{CheckFuture, HealthCheck};
use crate::error::ConnectFailed;
use crate::target::Target;

/// Passes when a TCP connection to the target's address can be opened (then closes it).
///
/// The lightest check there is: it proves the port accepts connections, not that the service
/// behind it works. Host names are resolved on every check; an address without a port means
/// port 80.
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
            let stream = tokio::net::TcpStream::connect(socket_authority(target))
                .await
                .map_err(ConnectFailed::new)?;
            drop(stream);
            Ok(())
        })
    }
}

/// `host:port` of the target, port 80 when the address has none.
pub(crate) fn socket_authority(target: &Target) -> String {
    let a = target.address();
    format!("{}:{}", a.host(), a.port_u16().unwrap_or(80))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_without_a_port_mean_80() {
        let t = Target::new("a", "api.internal").unwrap();
        assert_eq!(socket_authority(&t), "api.internal:80");
        let t = Target::new("b", "[::1]:8080").unwrap();
        assert_eq!(socket_authority(&t), "[::1]:8080");
    }
}
