//! Errors of the [`Admin`](super::Admin) endpoint: each is a response with its status and a
//! short JSON body (`{"error": "...", "message": "..."}`) that names no backend address and
//! echoes nothing the client sent.

use http::StatusCode;

/// Why the admin endpoint refused a request; [`status`](Self::status) is the response's
/// status.
///
/// # Examples
///
/// ```
/// use http::StatusCode;
/// use tower_lb::admin::error::AdminError;
///
/// assert_eq!(AdminError::ActionsDisabled.status(), StatusCode::FORBIDDEN);
/// assert_eq!(AdminError::UnknownTarget.code(), "unknown_target");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// No page or action at that path.
    #[error("no such page")]
    NotFound,
    /// The path is there, the method is not (pages take `GET` and `HEAD`, actions `POST`).
    #[error("method not allowed")]
    MethodNotAllowed {
        /// The methods the path takes (the `Allow` header).
        allow: &'static str,
    },
    /// Admin actions are off (the default; see
    /// [`AdminBuilder::actions`](super::AdminBuilder::actions)).
    #[error("admin actions are off")]
    ActionsDisabled,
    /// An action came without the header [`ACTION_HEADER`](super::ACTION_HEADER), which a
    /// cross-site form cannot send (the guard against cross-site request forgery).
    #[error("an admin action needs the header `x-tower-lb-admin`")]
    MissingActionHeader,
    /// A path segment is not valid percent-encoded UTF-8.
    #[error("malformed path")]
    BadPath,
    /// No load balancer of that name is registered.
    #[error("no such load balancer")]
    UnknownLoadBalancer,
    /// The load balancer has no pool (group) of that name.
    #[error("no such group in that load balancer")]
    UnknownGroup,
    /// The group has no target of that id.
    #[error("no such target in that group")]
    UnknownTarget,
    /// The action is none of `drain`, `disable`, `enable`.
    #[error("no such action (drain, disable, enable)")]
    UnknownAction,
}

impl AdminError {
    /// The response status: `404` for what is not there, `405`, `403` for actions that are off
    /// or unguarded, `400` for a malformed path.
    pub fn status(&self) -> StatusCode {
        match self {
            AdminError::NotFound
            | AdminError::UnknownLoadBalancer
            | AdminError::UnknownGroup
            | AdminError::UnknownTarget
            | AdminError::UnknownAction => StatusCode::NOT_FOUND,
            AdminError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            AdminError::ActionsDisabled | AdminError::MissingActionHeader => StatusCode::FORBIDDEN,
            AdminError::BadPath => StatusCode::BAD_REQUEST,
        }
    }

    /// A stable machine-readable code (the JSON body's `error`).
    pub fn code(&self) -> &'static str {
        match self {
            AdminError::NotFound => "not_found",
            AdminError::MethodNotAllowed { .. } => "method_not_allowed",
            AdminError::ActionsDisabled => "actions_disabled",
            AdminError::MissingActionHeader => "missing_action_header",
            AdminError::BadPath => "bad_path",
            AdminError::UnknownLoadBalancer => "unknown_load_balancer",
            AdminError::UnknownGroup => "unknown_group",
            AdminError::UnknownTarget => "unknown_target",
            AdminError::UnknownAction => "unknown_action",
        }
    }
}
