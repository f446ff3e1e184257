//! A hostile payment component: it implements the payment contract (v0.2.0), and its
//! `start-payment` misbehaves as the `hostile` setting says: `loop` (never returns), `alloc` (grows
//! memory towards 4 GiB), `outbound` (asks the host to send to the cloud metadata address),
//! `endless` (asks for one request after another), `fs` (reads a file: the host links no
//! filesystem), `panic`, or `ok` (behaves). The host must stop each within the manifest's limits
//! and keep serving.

#[cfg(target_arch = "wasm32")]
mod component {
    wit_bindgen::generate!({
        world: "payment-plugin",
        path: "../../wit/v0.2.0",
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

    fn metadata_request() -> wit::PaymentStep {
        wit::PaymentStep::Send(wit::Pending {
            request: wit::OutgoingRequest {
                method: wit::HttpMethod::Get,
                url: "http://169.254.169.254/latest/meta-data/".into(),
                headers: Vec::new(),
                body: Vec::new(),
            },
            continuation: b"again".to_vec(),
        })
    }

    fn done(url: String, order_no: String) -> wit::PaymentStep {
        wit::PaymentStep::Done(wit::PaymentStarted {
            redirect: wit::Redirect {
                url,
                method: wit::HttpMethod::Get,
                action: String::new(),
                fields: Vec::new(),
            },
            token: order_no,
            request_id: String::new(),
            total_fee: String::new(),
            seller: String::new(),
            order_string: None,
        })
    }

    fn misbehave(how: &str, order_no: String) -> Result<wit::PaymentStep, wit::PluginError> {
        match how {
            "loop" => {
                let mut x: u64 = 1;
                loop {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    if x == 0 {
                        return Ok(done("never".into(), order_no));
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
                Ok(done(format!("hoarded {}", hoard.len()), order_no))
            }
            "outbound" | "endless" => Ok(metadata_request()),
            "fs" => match std::fs::read_to_string("/etc/passwd") {
                Ok(text) => Ok(done(format!("read {} bytes", text.len()), order_no)),
                Err(e) => Err(wit::PluginError::Transport(format!("no file: {e}"))),
            },
            "panic" => panic!("the hostile component panics on purpose"),
            _ => Ok(done("behaved".into(), order_no)),
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
        ) -> Result<wit::PaymentStep, wit::PluginError> {
            misbehave(&setting(&settings, "hostile"), order.out_trade_no)
        }

        fn resume_payment(
            settings: Vec<wit::Pair>,
            _continuation: Vec<u8>,
            response: Result<wit::IncomingResponse, wit::SendFailure>,
        ) -> Result<wit::PaymentStep, wit::PluginError> {
            match (setting(&settings, "hostile").as_str(), response) {
                ("endless", _) => Ok(metadata_request()),
                (_, Ok(r)) => Ok(done(
                    format!("reached it: HTTP {}", r.status),
                    String::new(),
                )),
                (_, Err(wit::SendFailure::Refused(m))) => {
                    Err(wit::PluginError::Transport(format!("refused: {m}")))
                }
                (_, Err(e)) => Err(wit::PluginError::Transport(format!("{e:?}"))),
            }
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
        ) -> Result<wit::NotificationStep, wit::PluginError> {
            Err(wit::PluginError::Malformed(
                "the hostile component does not verify".into(),
            ))
        }

        fn resume_notification(
            _: Vec<wit::Pair>,
            _: Vec<u8>,
            _: Result<wit::IncomingResponse, wit::SendFailure>,
        ) -> Result<wit::NotificationStep, wit::PluginError> {
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
        ) -> Result<wit::ChannelsStep, wit::PluginError> {
            Ok(wit::ChannelsStep::Done(wit::ChannelList {
                channels: Vec::new(),
                last_used: None,
            }))
        }

        fn resume_channels(
            _: Vec<wit::Pair>,
            _: Vec<u8>,
            _: Result<wit::IncomingResponse, wit::SendFailure>,
        ) -> Result<wit::ChannelsStep, wit::PluginError> {
            Err(wit::PluginError::Malformed("no channels".into()))
        }

        fn query_trade(_: Vec<wit::Pair>, _: String) -> Result<wit::QueryStep, wit::PluginError> {
            Err(wit::PluginError::Malformed(
                "the hostile component does not query".into(),
            ))
        }

        fn resume_query(
            _: Vec<wit::Pair>,
            _: Vec<u8>,
            _: Result<wit::IncomingResponse, wit::SendFailure>,
        ) -> Result<wit::QueryStep, wit::PluginError> {
            Err(wit::PluginError::Malformed(
                "the hostile component does not query".into(),
            ))
        }

        fn verify_app_result(
            _: Vec<wit::Pair>,
            _: String,
        ) -> Result<wit::AppResult, wit::PluginError> {
            Err(wit::PluginError::Malformed(
                "the hostile component does not verify".into(),
            ))
        }
    }
}
