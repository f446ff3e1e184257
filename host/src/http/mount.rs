//! Handlers an embedder mounts beside payhost's own routes (`payhost demo` mounts its sandbox
//! gateway and demo shop this way): each owns a path prefix and answers every request under it.
//! payhost's routes come first, so a mount can never shadow `/v1`, `/admin` or the provider
//! endpoints; a mount only answers what would otherwise be a 404. `GET /` may redirect to a mount.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// Whether a request a mount is given comes from this machine: its connection is a loopback
/// one and every address a proxy named for it (`X-Forwarded-For`) is loopback too. Stricter than
/// the client address of the limits: a proxy on this machine whose `X-Forwarded-For` payhost
/// does not trust, or a trusted one a client sent `127.0.0.1` through, is not this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FromThisMachine(pub bool);

impl FromThisMachine {
    pub fn of<B>(remote: std::net::SocketAddr, req: &Request<B>) -> FromThisMachine {
        let loopback = |ip: std::net::IpAddr| ip.to_canonical().is_loopback();
        let forwarded_here = req.headers().get("forwarded").is_none()
            && req.headers().get_all("x-forwarded-for").iter().all(|v| {
                v.to_str().is_ok_and(|text| {
                    text.split(',')
                        .all(|e| e.trim().parse().is_ok_and(loopback))
                })
            });
        FromThisMachine(loopback(remote.ip()) && forwarded_here)
    }
}

/// What a mounted handler returns.
pub type MountFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// A mounted handler: the whole request (its path still starts with the prefix) to an answer.
pub type MountHandler = Arc<dyn Fn(Request<Incoming>) -> MountFuture + Send + Sync>;

/// One mount: a path prefix (`/shop`) and its handler.
#[derive(Clone)]
pub struct Mount {
    pub prefix: String,
    pub handler: MountHandler,
}

/// The mounts of a host, and where `GET /` sends the browser (the admin page when `None`).
#[derive(Clone, Default)]
pub struct Mounts {
    mounts: Vec<Mount>,
    root_redirect: Option<String>,
}

impl std::fmt::Debug for Mounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounts")
            .field(
                "prefixes",
                &self.mounts.iter().map(|m| &m.prefix).collect::<Vec<_>>(),
            )
            .field("root_redirect", &self.root_redirect)
            .finish()
    }
}

impl Mounts {
    pub fn new() -> Mounts {
        Mounts::default()
    }

    /// Serves every request whose path is `prefix` or starts with `prefix/` with `handler`.
    /// `prefix` is normalised to one leading and no trailing slash.
    ///
    /// # Panics
    /// On an empty prefix (`""` or `"/"`): a mount must not take every path.
    pub fn mount<F, Fut>(mut self, prefix: &str, handler: F) -> Mounts
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
    {
        let trimmed = prefix.trim_matches('/');
        assert!(!trimmed.is_empty(), "a mount needs a non-empty path prefix");
        self.mounts.push(Mount {
            prefix: format!("/{trimmed}"),
            handler: Arc::new(move |req| Box::pin(handler(req)) as MountFuture),
        });
        self
    }

    /// Makes `GET /` redirect to `location` instead of the admin page.
    pub fn redirect_root(mut self, location: &str) -> Mounts {
        self.root_redirect = Some(location.to_owned());
        self
    }

    /// Where `GET /` redirects, if not to the admin page.
    pub fn root_redirect(&self) -> Option<&str> {
        self.root_redirect.as_deref()
    }

    /// The mount owning `path`, the longest prefix first.
    pub fn find(&self, path: &str) -> Option<&Mount> {
        self.mounts
            .iter()
            .filter(|m| {
                path.strip_prefix(m.prefix.as_str())
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            })
            .max_by_key(|m| m.prefix.len())
    }

    pub fn is_empty(&self) -> bool {
        self.mounts.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: &'static str) -> impl Fn(Request<Incoming>) -> MountFuture {
        move |_| Box::pin(async move { Response::new(Full::new(Bytes::from(body))) })
    }

    #[test]
    fn prefixes_match_whole_segments_longest_first() {
        let m = Mounts::new()
            .mount("/shop/", answer("shop"))
            .mount("shop/admin", answer("shop admin"))
            .mount("/sandbox", answer("sandbox"))
            .redirect_root("/shop");
        assert_eq!(m.find("/shop").unwrap().prefix, "/shop");
        assert_eq!(m.find("/shop/buy/tea").unwrap().prefix, "/shop");
        assert_eq!(m.find("/shop/admin/x").unwrap().prefix, "/shop/admin");
        assert_eq!(m.find("/sandbox/gateway").unwrap().prefix, "/sandbox");
        assert!(m.find("/shopping").is_none());
        assert!(m.find("/").is_none());
        assert!(m.find("/v1/merchants").is_none());
        assert_eq!(m.root_redirect(), Some("/shop"));
        assert!(Mounts::new().root_redirect().is_none());
    }

    /// Only a loopback connection whose forwarded addresses are all loopback is this machine.
    #[test]
    fn this_machine_is_loopback_all_the_way() {
        let here = |peer: &str, headers: &[(&str, &str)]| {
            let mut req = Request::builder().uri("/sandbox/state");
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            FromThisMachine::of(peer.parse().unwrap(), &req.body(()).unwrap()).0
        };
        assert!(here("127.0.0.1:5000", &[]));
        assert!(here("[::1]:5000", &[]));
        assert!(here("[::ffff:127.0.0.2]:5000", &[]));
        assert!(here(
            "127.0.0.1:5000",
            &[("x-forwarded-for", "127.0.0.3, ::1")]
        ));
        assert!(!here("10.0.0.5:5000", &[]));
        // A trusted balancer elsewhere, sent `127.0.0.1` by its client: not this machine.
        assert!(!here("10.0.0.5:5000", &[("x-forwarded-for", "127.0.0.1")]));
        // A proxy on this machine forwarding a remote client.
        assert!(!here(
            "127.0.0.1:5000",
            &[("x-forwarded-for", "127.0.0.1, 203.0.113.9")]
        ));
        assert!(!here("127.0.0.1:5000", &[("x-forwarded-for", "unknown")]));
        assert!(!here("127.0.0.1:5000", &[("forwarded", "for=203.0.113.9")]));
    }

    #[test]
    #[should_panic(expected = "non-empty path prefix")]
    fn refuses_a_mount_of_everything() {
        let _ = Mounts::new().mount("/", answer("all"));
    }
}
