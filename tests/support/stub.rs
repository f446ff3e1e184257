//! A stub HTTP server on 127.0.0.1: every request is recorded and answered by a closure.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// One request as the stub saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub headers: Vec<(String, String)>,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The query (GET) or form body (POST) as ordered pairs.
    pub fn params(&self) -> Vec<(String, String)> {
        let raw = if self.method == "GET" {
            self.query.as_bytes()
        } else {
            &self.body
        };
        form_urlencoded::parse(raw).into_owned().collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }

    pub fn param(&self, key: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

pub type Handler = Arc<dyn Fn(&Seen) -> (u16, Vec<u8>) + Send + Sync>;

pub struct StubServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    handler: Arc<Mutex<Handler>>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    extra_headers: Arc<Mutex<Vec<(String, String)>>>,
}

impl StubServer {
    pub async fn start(
        handler: impl Fn(&Seen) -> (u16, Vec<u8>) + Send + Sync + 'static,
    ) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Mutex<Handler>> = Arc::new(Mutex::new(Arc::new(handler)));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let extra_headers: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let (seen2, handler2, delay2) = (seen.clone(), handler.clone(), delay_ms.clone());
        let extra2 = extra_headers.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (seen, handler, delay) = (seen2.clone(), handler2.clone(), delay2.clone());
                let extra = extra2.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, handler, delay) = (seen.clone(), handler.clone(), delay.clone());
                        let extra = extra.lock().unwrap().clone();
                        async move {
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let query = req.uri().query().unwrap_or("").to_string();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_owned);
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                                .collect();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes().to_vec())
                                .unwrap_or_default();
                            let s = Seen {
                                headers,
                                method,
                                path,
                                query,
                                content_type,
                                body,
                            };
                            seen.lock().unwrap().push(s.clone());
                            let wait = delay.load(std::sync::atomic::Ordering::Relaxed);
                            if wait > 0 {
                                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                            }
                            let h = handler.lock().unwrap().clone();
                            let (status, body) = h(&s);
                            let mut answer = hyper::Response::builder().status(status);
                            for (name, value) in &extra {
                                answer = answer.header(name.as_str(), value.as_str());
                            }
                            Ok::<_, std::convert::Infallible>(
                                answer.body(Full::new(Bytes::from(body))).unwrap(),
                            )
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        StubServer {
            addr,
            seen,
            handler,
            delay_ms,
            extra_headers,
        }
    }

    /// Adds these headers to every answer from now on (`Retry-After`, say).
    pub fn answer_headers(&self, headers: &[(&str, &str)]) {
        *self.extra_headers.lock().unwrap() = headers
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Replaces how the stub answers.
    pub fn answer(&self, handler: impl Fn(&Seen) -> (u16, Vec<u8>) + Send + Sync + 'static) {
        *self.handler.lock().unwrap() = Arc::new(handler);
    }

    /// Holds every answer back this long (a slow provider).
    pub fn delay(&self, d: std::time::Duration) {
        self.delay_ms
            .store(d.as_millis() as u64, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn clear(&self) {
        self.seen.lock().unwrap().clear();
    }
}
