//! A hostile payment component: it implements the payment contract, and its `start-payment`
//! misbehaves as the `hostile` setting says: `loop` (never returns), `alloc` (grows memory towards
//! 4 GiB), `outbound` (calls a host it is not allowed to), `panic`, or `ok` (behaves).
//! The host must stop each within the manifest's limits and keep serving.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "payment-plugin",
        path: "../../wit/v0.1.0",
        with: {
            "wasi:http/types@0.2.12": wasip2::http::types,
            "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
            "wasi:io/poll@0.2.12": wasip2::io::poll,
            "wasi:io/error@0.2.12": wasip2::io::error,
            "wasi:io/streams@0.2.12": wasip2::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        },
    });

    use exports::payhost::payment::plugin::Guest;
    use payhost::payment::types as wit;

    struct Hostile;
    export!(Hostile);

    fn setting(settings: &[wit::Pair], name: &str) -> String {
        settings
            .iter()
            .find(|p| p.key == name)
            .map(|p| p.value.clone())
            .unwrap_or_default()
    }

    fn misbehave(how: &str) -> Result<String, wit::PluginError> {
        match how {
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    if x == 0 {
                        return Ok("never".into());
                    }
                }
            }
            "alloc" => {
                // Keep every chunk: 4 GiB in 64 MiB steps.
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                for _ in 0..64 {
                    let mut chunk = vec![0u8; 64 << 20];
                    chunk[12345] = 1;
                    hoard.push(chunk);
                }
                Ok(format!("hoarded {}", hoard.len()))
            }
            "outbound" => {
                use wasip2::http::types::{Fields, OutgoingRequest, Scheme};
                let req = OutgoingRequest::new(Fields::new());
                let _ = req.set_scheme(Some(&Scheme::Http));
                let _ = req.set_authority(Some("169.254.169.254"));
                let _ = req.set_path_with_query(Some("/latest/meta-data/"));
                match wasip2::http::outgoing_handler::handle(req, None) {
                    Err(e) => Err(wit::PluginError::Transport(format!(
                        "denied at once: {e:?}"
                    ))),
                    Ok(f) => {
                        f.subscribe().block();
                        match f.get() {
                            Some(Ok(Ok(r))) => Ok(format!("reached it: HTTP {}", r.status())),
                            Some(Ok(Err(e))) => Err(wit::PluginError::Transport(format!("{e:?}"))),
                            _ => Err(wit::PluginError::Transport("no answer".into())),
                        }
                    }
                }
            }
            "panic" => panic!("the hostile component panics on purpose"),
            _ => Ok("behaved".into()),
        }
    }

    impl Guest for Hostile {
        fn describe() -> wit::PluginInfo {
            wit::PluginInfo {
                id: "hostile".into(),
                name: "hostile test component".into(),
                version: "0.1.0".into(),
                provider: "none".into(),
                settings: Vec::new(),
                notify_ack: "success".into(),
                notify_retry: "fail".into(),
            }
        }

        fn validate_settings(
            settings: Vec<wit::Pair>,
        ) -> Result<Vec<wit::Pair>, Vec<wit::FieldError>> {
            Ok(settings)
        }

        fn start_payment(
            settings: Vec<wit::Pair>,
            order: wit::PaymentRequest,
        ) -> Result<wit::PaymentStarted, wit::PluginError> {
            let outcome = misbehave(&setting(&settings, "hostile"))?;
            Ok(wit::PaymentStarted {
                redirect: wit::Redirect {
                    url: outcome,
                    method: wit::HttpMethod::Get,
                    action: String::new(),
                    fields: Vec::new(),
                },
                token: order.out_trade_no,
                request_id: String::new(),
                total_fee: order.total_fee,
                seller: String::new(),
            })
        }

        fn verify_return(
            _: Vec<wit::Pair>,
            _: Vec<wit::Pair>,
        ) -> Result<wit::VerifiedReturn, wit::PluginError> {
            Err(wit::PluginError::Malformed(
                "the hostile component does not verify".into(),
            ))
        }

        fn verify_notification(
            _: Vec<wit::Pair>,
            _: Vec<wit::Pair>,
        ) -> Result<wit::Notification, wit::PluginError> {
            Err(wit::PluginError::Malformed(
                "the hostile component does not verify".into(),
            ))
        }

        fn match_order(
            _: wit::Notification,
            _: wit::OrderExpectation,
        ) -> Result<(), Vec<wit::FieldError>> {
            Ok(())
        }

        fn list_channels(
            _: Vec<wit::Pair>,
            _: Option<String>,
        ) -> Result<wit::ChannelList, wit::PluginError> {
            Ok(wit::ChannelList {
                channels: Vec::new(),
                last_used: None,
            })
        }
    }
}
