//! The merchant settings: their schema (for admin forms) and their validation.
//!
//! Names are the ones of `payhost.toml`'s `[merchants.<id>]` tables. Values pasted with spaces or
//! line breaks around them are trimmed; whatever is still malformed is refused with the field named.

use crate::model::{FieldError, FieldKind, SelectOption, SettingField, ShownWhen};
use crate::sign;
use crate::sign::{PrivateKey, PublicKey};

pub const DEFAULT_GATEWAY_URL: &str = "https://wappaygw.alipay.com/service/rest.htm";
pub const DEFAULT_NOTIFY_VERIFY_URL: &str = "https://mapi.alipay.com/gateway.do";
pub const DEFAULT_PAYCHANNEL_URL: &str = "https://mapi.alipay.com/gateway.do";
/// The mapi gateway: the PC cashier (`create_direct_pay_by_user`) and `single_trade_query`.
pub const DEFAULT_MAPI_URL: &str = "https://mapi.alipay.com/gateway.do";
/// Alipay's common mapi RSA public key (2013+; [EXTRA §1.3]): it verifies real
/// generation-B app notifies and app SDK results ([EXTRA §6.3]). Not the WAP key.
pub const DEFAULT_MAPI_PUBLIC_KEY: &str = "MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQCnxj/9qwVfgoUh/y2W89L6BkRAFljhNhgPdyPuBV64bfQNN1PjbCzkIM6qRdKBoLPXmKKMiFYnkd6rAoprih3/PrQEB/VsW8OoM8fxn67UDYuyBTqA23MML9q1+ilIZwBC2AQ2UBVOrFXfFl75p6/B5KsiNG9zpgmLCUYuLkxpLQIDAQAB";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// One seller: every order is paid to the configured account.
    B2c,
    /// A marketplace: each order names its own seller.
    C2c,
}

#[derive(Clone, Debug)]
pub enum Signer {
    Md5 {
        key: String,
    },
    Rsa {
        private_key: Box<PrivateKey>,
        alipay_public_key: Box<PublicKey>,
    },
}

impl Signer {
    /// The `sec_id` value for this signer.
    pub fn sec_id(&self) -> &'static str {
        match self {
            Signer::Md5 { .. } => "MD5",
            Signer::Rsa { .. } => "0001",
        }
    }
}

/// Validated merchant settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub partner: String,
    pub seller_email: Option<String>,
    pub mode: Mode,
    pub signer: Signer,
    pub gateway_url: String,
    pub notify_verify_url: String,
    pub paychannel_url: String,
    /// The mapi gateway (PC cashier, `single_trade_query`).
    pub mapi_url: String,
    /// The merchant's own mapi key, if configured (see [`Settings::mapi_public_key`]).
    mapi_public_key: Option<Box<PublicKey>>,
    /// The per-merchant Alipay key of the 2011–2013 app era (ms.alipay.com 密钥管理), for
    /// generation-A app notifies and results; when unset, `mapi_public_key` is used.
    pub app_public_key: Option<Box<PublicKey>>,
}

/// Alipay's common mapi key, parsed once per instance and only when a call needs it (a WAP
/// notify never does: parsing it on every call cost a verify-notification about a tenth).
fn default_mapi_key() -> &'static PublicKey {
    static KEY: std::sync::OnceLock<PublicKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        sign::parse_public_key(DEFAULT_MAPI_PUBLIC_KEY).expect("the built-in mapi key parses")
    })
}

impl Settings {
    /// Verifies Alipay's RSA signatures on the mapi side: PC returns and notifies, generation-B app
    /// notifies, app SDK results. The merchant's key, else Alipay's common one.
    pub fn mapi_public_key(&self) -> &PublicKey {
        match self.mapi_public_key.as_deref() {
            Some(key) => key,
            None => default_mapi_key(),
        }
    }

    /// The Alipay keys an app-era signature (generation-A notify, SDK result) may verify with:
    /// the per-merchant key first when configured, then the mapi key.
    pub fn app_keys(&self) -> impl Iterator<Item = &PublicKey> {
        self.app_public_key
            .as_deref()
            .into_iter()
            .chain(std::iter::once(self.mapi_public_key()))
    }
}

struct FieldSpec {
    name: &'static str,
    label_zh: &'static str,
    label_en: &'static str,
    kind: FieldKind,
    required: bool,
    secret: bool,
    rule: &'static str,
    options: &'static [(&'static str, &'static str, &'static str)],
    default_value: Option<&'static str>,
}

const FIELDS: &[FieldSpec] = &[
    FieldSpec {
        name: "api",
        label_zh: "接口类型",
        label_en: "Alipay API",
        kind: FieldKind::Select,
        required: false,
        secret: false,
        rule: "mapi (legacy: partner ID + key, MD5 or RSA) or openapi (open platform: APPID + RSA2 keys)",
        options: &[
            (
                "mapi",
                "旧版接口（合作者身份 PID + 密钥）",
                "Legacy API (partner ID + key)",
            ),
            (
                "openapi",
                "新版开放平台（APPID + 应用私钥 + 支付宝公钥）",
                "Open platform (APPID + app private key + Alipay public key)",
            ),
        ],
        default_value: Some("mapi"),
    },
    FieldSpec {
        name: "partner",
        label_zh: "合作者身份ID (partner)",
        label_en: "Partner ID",
        kind: FieldKind::Text,
        required: false,
        secret: false,
        rule: "16 digits starting with 2088; required when api is mapi",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "key",
        label_zh: "交易安全校验码 (key)",
        label_en: "Security key (MD5)",
        kind: FieldKind::Secret,
        required: false,
        secret: true,
        rule: "32 letters or digits; required when sign_type is MD5",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "seller_email",
        label_zh: "支付宝账户 (收款账号)",
        label_en: "Alipay seller account",
        kind: FieldKind::Text,
        required: false,
        secret: false,
        rule:
            "an email address, an 11-digit mobile number or a 2088… user id; required in b2c mode",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "mode",
        label_zh: "收款模式",
        label_en: "Seller mode",
        kind: FieldKind::Select,
        required: false,
        secret: false,
        rule: "b2c or c2c",
        options: &[
            (
                "b2c",
                "B2C：只有一个卖家，款项进入签约账号",
                "B2C: one seller, money goes to the configured account",
            ),
            (
                "c2c",
                "C2C：平台多卖家，每笔订单指定卖家账号",
                "C2C: marketplace, each order names its seller",
            ),
        ],
        default_value: Some("b2c"),
    },
    FieldSpec {
        name: "sign_type",
        label_zh: "签名方式",
        label_en: "Signature type",
        kind: FieldKind::Select,
        required: false,
        secret: false,
        rule: "api mapi: MD5 (default) or RSA (0001); api openapi: RSA2 (default, SHA256withRSA) or RSA",
        options: &[
            ("MD5", "MD5", "MD5"),
            ("RSA", "RSA (0001 / SHA1withRSA)", "RSA (0001 / SHA1withRSA)"),
            ("RSA2", "RSA2 (SHA256withRSA，开放平台)", "RSA2 (SHA256withRSA, open platform)"),
        ],
        default_value: None,
    },
    FieldSpec {
        name: "private_key",
        label_zh: "商户私钥 (RSA)",
        label_en: "Merchant private key (RSA)",
        kind: FieldKind::Pem,
        required: false,
        secret: true,
        rule: "PEM (PKCS#8 or PKCS#1) or its base64 body, a 1024-bit key; required when sign_type is RSA",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "alipay_public_key",
        label_zh: "支付宝公钥 (RSA)",
        label_en: "Alipay public key (RSA)",
        kind: FieldKind::Pem,
        required: false,
        secret: false,
        rule: "PEM or its base64 body; required when sign_type is RSA",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "gateway_url",
        label_zh: "网关地址",
        label_en: "Gateway URL",
        kind: FieldKind::Url,
        required: false,
        secret: false,
        rule: "an absolute http or https URL",
        options: &[],
        default_value: Some(DEFAULT_GATEWAY_URL),
    },
    FieldSpec {
        name: "notify_verify_url",
        label_zh: "通知验证地址",
        label_en: "notify_verify URL",
        kind: FieldKind::Url,
        required: false,
        secret: false,
        rule: "an absolute http or https URL",
        options: &[],
        default_value: Some(DEFAULT_NOTIFY_VERIFY_URL),
    },
    FieldSpec {
        name: "paychannel_url",
        label_zh: "支付渠道查询地址",
        label_en: "Pay-channel query URL",
        kind: FieldKind::Url,
        required: false,
        secret: false,
        rule: "an absolute http or https URL",
        options: &[],
        default_value: Some(DEFAULT_PAYCHANNEL_URL),
    },
    FieldSpec {
        name: "mapi_url",
        label_zh: "即时到账/查询网关地址",
        label_en: "mapi gateway URL (PC pay, trade query)",
        kind: FieldKind::Url,
        required: false,
        secret: false,
        rule: "an absolute http or https URL",
        options: &[],
        default_value: Some(DEFAULT_MAPI_URL),
    },
    FieldSpec {
        name: "mapi_public_key",
        label_zh: "支付宝公钥 (即时到账/移动支付 RSA)",
        label_en: "Alipay public key for PC and app pay (RSA)",
        kind: FieldKind::Pem,
        required: false,
        secret: false,
        rule: "PEM or its base64 body; defaults to Alipay's common mapi key (MIGfMA0…nxj/9…)",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "app_alipay_public_key",
        label_zh: "支付宝公钥 (安全支付，商户专属)",
        label_en: "Per-merchant Alipay public key for app pay (2011–2013)",
        kind: FieldKind::Pem,
        required: false,
        secret: false,
        rule: "PEM or its base64 body, from ms.alipay.com; verifies notify_data app notifies and SDK results (else the mapi key does)",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "app_id",
        label_zh: "APPID (开放平台应用)",
        label_en: "APPID (open platform app)",
        kind: FieldKind::Text,
        required: false,
        secret: false,
        rule: "16 digits; required when api is openapi",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "app_private_key",
        label_zh: "应用私钥",
        label_en: "App private key",
        kind: FieldKind::Pem,
        required: false,
        secret: true,
        rule: "PEM (PKCS#8 or PKCS#1) or its base64 body; required when api is openapi",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "app_cert",
        label_zh: "应用公钥证书 (证书模式)",
        label_en: "App public-key certificate (certificate mode)",
        kind: FieldKind::Pem,
        required: false,
        secret: false,
        rule: "PEM certificate (appCertPublicKey_<APPID>.crt); certificate mode needs all three certificates",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "alipay_cert",
        label_zh: "支付宝公钥证书 (证书模式)",
        label_en: "Alipay public-key certificate (certificate mode)",
        kind: FieldKind::Pem,
        required: false,
        secret: false,
        rule: "PEM certificate (alipayCertPublicKey_RSA2.crt); replaces alipay_public_key in certificate mode",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "alipay_root_cert",
        label_zh: "支付宝根证书 (证书模式)",
        label_en: "Alipay root certificate (certificate mode)",
        kind: FieldKind::Pem,
        required: false,
        secret: false,
        rule: "PEM bundle (alipayRootCert.crt)",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "seller_id",
        label_zh: "收款支付宝用户ID (2088…)",
        label_en: "Seller's Alipay user id (2088…)",
        kind: FieldKind::Text,
        required: false,
        secret: false,
        rule: "16 digits starting with 2088; the default seller of api openapi (an order's seller_id overrides it; without it, every order must name its seller)",
        options: &[],
        default_value: None,
    },
    FieldSpec {
        name: "gateway",
        label_zh: "开放平台网关",
        label_en: "Open platform gateway",
        kind: FieldKind::Url,
        required: false,
        secret: false,
        rule: "an absolute http or https URL; sandbox: https://openapi-sandbox.dl.alipaydev.com/gateway.do",
        // Offered by admin forms as one click each (a `url` field's options are suggestions).
        options: &[
            (
                crate::openapi::settings::DEFAULT_GATEWAY,
                "正式环境",
                "Production",
            ),
            (
                crate::openapi::settings::SANDBOX_GATEWAY,
                "支付宝沙箱环境",
                "Alipay sandbox",
            ),
        ],
        default_value: Some(crate::openapi::settings::DEFAULT_GATEWAY),
    },
];

/// The schema shown by admin forms.
pub fn schema() -> Vec<SettingField> {
    FIELDS
        .iter()
        .map(|f| SettingField {
            name: f.name.into(),
            label_zh: f.label_zh.into(),
            label_en: f.label_en.into(),
            kind: f.kind,
            required: f.required,
            secret: f.secret,
            rule: f.rule.into(),
            options: f
                .options
                .iter()
                .map(|(v, zh, en)| SelectOption {
                    value: (*v).into(),
                    label_zh: (*zh).into(),
                    label_en: (*en).into(),
                })
                .collect(),
            default_value: f.default_value.map(Into::into),
            shown_when: shown_when(f.name),
        })
        .collect()
}

/// Which family a setting belongs to: the open platform's settings are shown when `api` is
/// `openapi`, the legacy ones when it is `mapi`; `api` and the settings both families have
/// (same name, each family's meaning) always.
fn shown_when(name: &str) -> Option<ShownWhen> {
    use crate::openapi::settings::{OPENAPI_ONLY, SHARED};
    let family = if OPENAPI_ONLY.contains(&name) {
        "openapi"
    } else if SHARED.contains(&name) {
        return None;
    } else {
        "mapi"
    };
    Some(ShownWhen {
        setting: "api".into(),
        values: vec![family.into()],
    })
}

/// Where a setting stands in the schema (the order normalised settings are stored in).
pub fn schema_position(name: &str) -> usize {
    FIELDS
        .iter()
        .position(|f| f.name == name)
        .unwrap_or(FIELDS.len())
}

/// True for a 16-digit id starting with 2088 (partner ids and Alipay user ids).
pub fn is_alipay_user_id(s: &str) -> bool {
    s.len() == 16 && s.starts_with("2088") && s.bytes().all(|b| b.is_ascii_digit())
}

/// A seller account: an email, an 11-digit mainland mobile number, or a 2088… user id.
pub fn is_seller_account(s: &str) -> bool {
    is_alipay_user_id(s) || is_mobile(s) || is_email(s)
}

fn is_mobile(s: &str) -> bool {
    s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit())
}

fn is_email(s: &str) -> bool {
    if s.len() > 100 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains("..")
                && !s.contains(['<', '>', '&', '"', '\''])
        }
        None => false,
    }
}

/// An absolute http(s) URL with a host, no spaces, no fragment.
pub fn is_http_url(s: &str) -> bool {
    url_problem(s, true).is_none()
}

/// The rule an http(s) URL breaks, said so a person can fix it; `None` when it breaks none.
/// `query` says whether a query string (`?…`) is allowed.
pub fn url_problem(s: &str, query: bool) -> Option<&'static str> {
    // A scheme is case-insensitive (RFC 3986, section 3.1): `HTTPS://` is https.
    let after = |scheme: &str| {
        s.get(..scheme.len())
            .filter(|head| head.eq_ignore_ascii_case(scheme))
            .map(|_| &s[scheme.len()..])
    };
    let Some(rest) = after("https://").or_else(|| after("http://")) else {
        return Some("must be an absolute URL starting with http:// or https://");
    };
    let host_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..host_end];
    if authority.is_empty() {
        return Some("must name a host after http:// or https://");
    }
    if authority.contains('@') {
        return Some("must not carry a user name or password (user@host)");
    }
    if let Some(problem) = authority_problem(authority) {
        return Some(problem);
    }
    if s.len() > 1024 {
        return Some("must be at most 1024 characters");
    }
    if s.contains('#') {
        return Some("must not contain a fragment (#…)");
    }
    if s.chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
    {
        return Some("must not contain spaces, control characters, '<', '>' or '\"'");
    }
    if !query && s.contains('?') {
        return Some("must not contain a query string (?…): Alipay appends its own parameters");
    }
    None
}

/// The rule a URL's `host[:port]` breaks as a browser (and the host's origin checks) read it: a
/// bracketed IPv6 address closed and followed by nothing or `:port`, a host, and a port (when one
/// is written) of digits from 1 to 65535. `host:99999` or `host:443.evil.example` names another
/// place than it seems, or none.
fn authority_problem(authority: &str) -> Option<&'static str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            None => return Some("must close a bracketed IPv6 address with ']'"),
            // Brackets hold an IPv6 address and nothing else (`[127.0.0.1]` or `[example.com]`
            // is no URL to a browser, though some clients read it).
            Some((addr, _)) if addr.parse::<std::net::Ipv6Addr>().is_err() => {
                return Some("must hold an IPv6 address between '[' and ']'")
            }
            Some((addr, "")) => (addr, None),
            Some((addr, tail)) => match tail.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return Some("must have nothing but :port after a bracketed IPv6 address"),
            },
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Some("must name a host after http:// or https://");
    }
    match port {
        // Empty: the scheme's default port, as a browser reads `https://host:/`.
        None | Some("") => None,
        Some(p)
            if p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n)) =>
        {
            None
        }
        Some(_) => Some("must have a port from 1 to 65535 (digits only) after the host's ':'"),
    }
}

/// A provider URL as Alipay's own SDKs (and the shops built on them) wrote it is the same
/// endpoint without its query: `…/gateway.do?`, `…/rest.htm?` and the verify URL's
/// `…/gateway.do?service=notify_verify&` (the component adds that service itself). Any other
/// query is left for [`url_problem`] to refuse.
fn without_sdk_query<'a>(name: &str, u: &'a str) -> std::borrow::Cow<'a, str> {
    // Settings are read on every call: a URL without a query (the usual one) is not copied.
    let Some((base, query)) = u.split_once('?') else {
        return u.into();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            !(name == "notify_verify_url" && p.eq_ignore_ascii_case("service=notify_verify"))
        })
        .collect();
    if kept.is_empty() {
        base.into()
    } else {
        format!("{base}?{}", kept.join("&")).into()
    }
}

/// `u` with its scheme in lower case (`HTTPS://x` → `https://x`); `u` has passed [`url_problem`].
pub fn with_lower_scheme(u: &str) -> String {
    match u.split_once("://") {
        Some((scheme, rest)) => format!("{}://{rest}", scheme.to_ascii_lowercase()),
        None => u.to_owned(),
    }
}

/// Trims every value as pasted (spaces and line breaks around it).
fn trimmed<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// One error per setting given more than once. Which copy would the operator have meant? Both
/// API families refuse a repeated setting on every call, never "the last one wins" (a vendor
/// appending overrides to stored settings would otherwise sign with another partner or key).
pub(crate) fn repeated(pairs: &[(String, String)]) -> Vec<FieldError> {
    repeated_keys(pairs)
        .into_iter()
        .map(|k| FieldError::new(k, "is given more than once"))
        .collect()
}

/// The keys that appear more than once, each once, in byte order. Sorting keeps it
/// O(n log n) for a hostile form of thousands of fields.
pub(crate) fn repeated_keys(pairs: &[(String, String)]) -> Vec<&str> {
    let mut keys: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    let mut twice: Vec<&str> = keys
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0])
        .collect();
    twice.dedup();
    twice
}

/// Validated settings and the normalised pairs to store.
pub type Validated = (Settings, Vec<(String, String)>);

/// Validates a settings set and returns the typed settings plus the normalised pairs to store,
/// or every bad field with its reason.
pub fn validate(pairs: &[(String, String)]) -> Result<Validated, Vec<FieldError>> {
    let mut errors = repeated(pairs);
    // Open-platform settings reach here only through a step of the legacy API (the others go
    // to `openapi::settings`): one error saying so, not "must be mapi or openapi" and every
    // open-platform setting listed as foreign.
    if errors.is_empty()
        && pairs
            .iter()
            .any(|(k, v)| k == "api" && v.trim().eq_ignore_ascii_case("openapi"))
    {
        return Err(vec![FieldError::new(
            "api",
            "is openapi, but this is a step of the legacy API (api = mapi): call it with the settings its flow started with",
        )]);
    }
    for (k, v) in pairs {
        if crate::openapi::settings::OPENAPI_ONLY.contains(&k.as_str()) {
            errors.push(FieldError::new(
                k,
                "is a setting of the open platform (api = openapi), not of api = mapi",
            ));
        } else if k == "api" && !v.trim().is_empty() && !v.trim().eq_ignore_ascii_case("mapi") {
            errors.push(FieldError::new("api", "must be mapi or openapi"));
        } else if !FIELDS.iter().any(|f| f.name == k) {
            errors.push(FieldError::new(k, "is not a setting of this plugin"));
        }
    }
    let get = |name: &str| trimmed(pairs, name);

    let partner = match get("partner") {
        None => {
            errors.push(FieldError::new(
                "partner",
                "is required (16 digits starting with 2088)",
            ));
            String::new()
        }
        Some(p) if !is_alipay_user_id(p) => {
            errors.push(FieldError::new(
                "partner",
                "must be 16 digits starting with 2088",
            ));
            String::new()
        }
        Some(p) => p.to_owned(),
    };

    let mode = match get("mode").map(|m| m.to_ascii_lowercase()) {
        None => Mode::B2c,
        Some(m) if m == "b2c" => Mode::B2c,
        Some(m) if m == "c2c" => Mode::C2c,
        Some(_) => {
            errors.push(FieldError::new("mode", "must be b2c or c2c"));
            Mode::B2c
        }
    };

    let seller_email = match get("seller_email") {
        None => {
            if mode == Mode::B2c {
                errors.push(FieldError::new(
                    "seller_email",
                    "is required in b2c mode (the account receiving the money)",
                ));
            }
            None
        }
        Some(s) if !is_seller_account(s) => {
            errors.push(FieldError::new(
                "seller_email",
                "must be an email address, an 11-digit mobile number or a 2088… user id",
            ));
            None
        }
        Some(s) => Some(s.to_owned()),
    };

    let sign_type = match get("sign_type").map(|s| s.to_ascii_uppercase()) {
        None => "MD5".to_owned(),
        Some(s) if s == "MD5" => s,
        Some(s) if s == "RSA" || s == "0001" => "RSA".to_owned(),
        Some(_) => {
            errors.push(FieldError::new(
                "sign_type",
                "must be MD5 or RSA for api = mapi (RSA2 is the open platform's: set api = openapi)",
            ));
            "MD5".to_owned()
        }
    };

    let signer = if sign_type == "MD5" {
        match get("key") {
            None => {
                errors.push(FieldError::new(
                    "key",
                    "is required when sign_type is MD5 (32 letters or digits)",
                ));
                None
            }
            Some(k) if k.len() != 32 || !k.bytes().all(|b| b.is_ascii_alphanumeric()) => {
                errors.push(FieldError::new("key", md5_key_problem(k)));
                None
            }
            Some(k) => Some(Signer::Md5 { key: k.to_owned() }),
        }
    } else {
        let private_key = match get("private_key") {
            None => {
                errors.push(FieldError::new(
                    "private_key",
                    "is required when sign_type is RSA",
                ));
                None
            }
            Some(pem) => match sign::parse_private_key(pem) {
                // A 2048-bit key would cost a forged notify_data of a few KiB more than a call's
                // fuel to decrypt, and a real notify nearly as much (issue 21's flood).
                Ok(k) if k.size() != sign::LEGACY_RSA_KEY_BYTES => {
                    errors.push(FieldError::new(
                        "private_key",
                        format!(
                            "must be a 1024-bit key for sign_type RSA (this one is {}-bit): Alipay's legacy interfaces encrypt notify_data for it in 128-byte blocks; a 2048-bit key is the open platform's (api = openapi, RSA2, app_private_key)",
                            k.size() * 8
                        ),
                    ));
                    None
                }
                Ok(k) => Some(k),
                Err(e) => {
                    errors.push(FieldError::new("private_key", e.to_string()));
                    None
                }
            },
        };
        let public_key = match get("alipay_public_key") {
            None => {
                errors.push(FieldError::new(
                    "alipay_public_key",
                    "is required when sign_type is RSA",
                ));
                None
            }
            Some(pem) => match sign::parse_public_key(pem) {
                Ok(k) => Some(k),
                Err(e) => {
                    errors.push(FieldError::new("alipay_public_key", e.to_string()));
                    None
                }
            },
        };
        match (private_key, public_key) {
            (Some(p), Some(a)) => Some(Signer::Rsa {
                private_key: Box::new(p),
                alipay_public_key: Box::new(a),
            }),
            _ => None,
        }
    };

    // Alipay's endpoints take no query of the merchant's: the component adds its own
    // parameters, and a query here would be sent beside them (`?service=…&service=…`).
    let mut url = |name: &str, default: &str| -> String {
        match get(name) {
            None => default.to_owned(),
            Some(u) => {
                let u = without_sdk_query(name, u);
                match url_problem(&u, false) {
                    None => with_lower_scheme(&u),
                    Some(rule) => {
                        errors.push(FieldError::new(name, rule));
                        default.to_owned()
                    }
                }
            }
        }
    };
    let gateway_url = url("gateway_url", DEFAULT_GATEWAY_URL);
    let notify_verify_url = url("notify_verify_url", DEFAULT_NOTIFY_VERIFY_URL);
    let paychannel_url = url("paychannel_url", DEFAULT_PAYCHANNEL_URL);
    let mapi_url = url("mapi_url", DEFAULT_MAPI_URL);
    let mut optional_key = |name: &str| match get(name) {
        None => None,
        Some(pem) => match sign::parse_public_key(pem) {
            Ok(k) => Some(Box::new(k)),
            Err(e) => {
                errors.push(FieldError::new(name, e.to_string()));
                None
            }
        },
    };
    let mapi_public_key = optional_key("mapi_public_key");
    let app_public_key = optional_key("app_alipay_public_key");

    if !errors.is_empty() {
        return Err(errors);
    }
    let signer = signer.expect("no errors means the signer was built");
    // What to store: every value trimmed, select values spelled as the schema lists them, every
    // setting with a default present, in the schema's order (validating it again changes nothing).
    let mode_value = if mode == Mode::B2c { "b2c" } else { "c2c" };
    let value_of = |name: &str| -> Option<String> {
        match name {
            "partner" => Some(partner.clone()),
            "seller_email" => seller_email.clone(),
            "mode" => Some(mode_value.to_owned()),
            // Accepted in any case (`MAPI`); stored as the schema spells it.
            "api" => Some("mapi".to_owned()),
            "sign_type" => Some(sign_type.clone()),
            "gateway_url" => Some(gateway_url.clone()),
            "notify_verify_url" => Some(notify_verify_url.clone()),
            "paychannel_url" => Some(paychannel_url.clone()),
            "mapi_url" => Some(mapi_url.clone()),
            other => get(other).map(str::to_owned),
        }
    };
    // Only this family's settings: the open platform's (`gateway` has a default) never appear
    // in a legacy merchant's, which would refuse them.
    let normalised = FIELDS
        .iter()
        .filter(|f| !crate::openapi::settings::OPENAPI_ONLY.contains(&f.name))
        .filter_map(|f| {
            value_of(f.name)
                .or_else(|| f.default_value.map(str::to_owned))
                .map(|v| (f.name.to_owned(), v))
        })
        .collect();
    Ok((
        Settings {
            partner,
            seller_email,
            mode,
            signer,
            gateway_url,
            notify_verify_url,
            paychannel_url,
            mapi_url,
            mapi_public_key,
            app_public_key,
        },
        normalised,
    ))
}

/// What is wrong with an MD5 key, without quoting any of it (it is a secret): its length, and
/// what kinds of characters other than ASCII letters and digits it holds (a space, a quote or a
/// full-width character pasted with it).
fn md5_key_problem(k: &str) -> String {
    let count = k.chars().count();
    let mut kinds = Vec::new();
    if k.chars().any(char::is_whitespace) {
        kinds.push("spaces");
    }
    if !k.is_ascii() {
        kinds.push("non-ASCII (full-width?) characters");
    }
    if k.chars().any(|c| c.is_ascii_punctuation()) {
        kinds.push("punctuation such as quotes");
    }
    let bad = k.chars().filter(|c| !c.is_ascii_alphanumeric()).count();
    if bad == 0 {
        format!("must be exactly 32 ASCII letters or digits (got {count} characters)")
    } else {
        format!(
            "must be exactly 32 ASCII letters or digits (got {count} characters, {bad} of them not a letter or digit: {})",
            kinds.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    /// A pasted key with a stray character is told what kind, never quoted.
    #[test]
    fn a_bad_md5_key_is_described_not_quoted() {
        let key = "abcdefghijklmnopqrstuvwxyz0123“5";
        let said = md5_key_problem(key);
        assert_eq!(
            said,
            "must be exactly 32 ASCII letters or digits (got 32 characters, 1 of them not a letter or digit: non-ASCII (full-width?) characters)"
        );
        assert!(!said.contains("abcdef"));
        assert_eq!(
            md5_key_problem("short"),
            "must be exactly 32 ASCII letters or digits (got 5 characters)"
        );
        assert!(md5_key_problem(" ab\"").contains("spaces, punctuation such as quotes"));
    }

    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn md5_b2c_with_stray_spaces_is_trimmed() {
        let (s, norm) = validate(&pairs(&[
            ("partner", "  2088101122136241 \n"),
            ("key", "\t10000000000000000000000000000000  "),
            ("seller_email", " shop@example.com "),
        ]))
        .unwrap();
        assert_eq!(s.partner, "2088101122136241");
        assert_eq!(s.mode, Mode::B2c);
        assert!(
            matches!(&s.signer, Signer::Md5 { key } if key == "10000000000000000000000000000000")
        );
        assert_eq!(s.gateway_url, DEFAULT_GATEWAY_URL);
        assert!(norm.contains(&("seller_email".into(), "shop@example.com".into())));
    }

    #[test]
    fn a_setting_given_twice_is_refused_in_either_family() {
        for (twice, field) in [
            (
                vec![
                    ("partner", "2088101122136241"),
                    ("key", "10000000000000000000000000000000"),
                    ("partner", "2088101122138888"),
                ],
                "partner",
            ),
            (
                vec![
                    ("api", "openapi"),
                    ("app_id", "2021000000000001"),
                    ("app_id", "2021000000000002"),
                ],
                "app_id",
            ),
        ] {
            // Reported with every other bad field (here the ones the example leaves out).
            let errors = crate::connector::validate_settings(&pairs(&twice)).unwrap_err();
            let repeated: Vec<_> = errors
                .iter()
                .filter(|e| e.reason.contains("more than once"))
                .collect();
            assert_eq!(repeated.len(), 1, "{errors:?}");
            assert_eq!(repeated[0].field, field);
        }
    }

    #[test]
    fn normalised_settings_are_trimmed_defaulted_in_schema_order_and_stable() {
        let (_, norm) = validate(&pairs(&[
            ("seller_email", " shop@example.com "),
            ("sign_type", " md5"),
            ("key", "\t10000000000000000000000000000000  "),
            ("partner", "  2088101122136241 \n"),
            ("mode", "C2C "),
            ("api", " MAPI "),
            ("gateway_url", " http://127.0.0.1:9/gw "),
            ("paychannel_url", "   "),
        ]))
        .unwrap();
        assert_eq!(
            norm,
            pairs(&[
                ("api", "mapi"),
                ("partner", "2088101122136241"),
                ("key", "10000000000000000000000000000000"),
                ("seller_email", "shop@example.com"),
                ("mode", "c2c"),
                ("sign_type", "MD5"),
                ("gateway_url", "http://127.0.0.1:9/gw"),
                ("notify_verify_url", DEFAULT_NOTIFY_VERIFY_URL),
                ("paychannel_url", DEFAULT_PAYCHANNEL_URL),
                ("mapi_url", DEFAULT_MAPI_URL),
            ])
        );
        // Every legacy setting the schema gives a default comes back.
        for f in FIELDS.iter().filter(|f| {
            f.default_value.is_some() && !crate::openapi::settings::OPENAPI_ONLY.contains(&f.name)
        }) {
            assert!(norm.iter().any(|(k, _)| k == f.name), "{} missing", f.name);
        }
        let (_, again) = validate(&norm).unwrap();
        assert_eq!(
            again, norm,
            "validating the normalised settings changes nothing"
        );
        // A provider URL with a query is refused naming the field (it would be sent beside the
        // component's own `service=`).
        let errs = validate(&pairs(&[
            ("partner", "2088101122136241"),
            ("key", "10000000000000000000000000000000"),
            ("seller_email", "shop@example.com"),
            (
                "notify_verify_url",
                "https://mapi.alipay.com/gateway.do?service=evil",
            ),
        ]))
        .unwrap_err();
        assert!(
            errs.iter()
                .any(|e| e.field == "notify_verify_url" && e.reason.contains("query")),
            "{errs:?}"
        );
        // The URLs as Alipay's PHP SDKs wrote them (and merchants pasted them from) are the same
        // endpoints: accepted, stored without the query.
        let (_, sdk) = validate(&pairs(&[
            ("partner", "2088101122136241"),
            ("key", "10000000000000000000000000000000"),
            ("seller_email", "shop@example.com"),
            (
                "gateway_url",
                "http://wappaygw.alipay.com/service/rest.htm?",
            ),
            (
                "notify_verify_url",
                "https://mapi.alipay.com/gateway.do?service=notify_verify&",
            ),
            ("mapi_url", "https://mapi.alipay.com/gateway.do?"),
        ]))
        .unwrap();
        let stored = |k: &str| sdk.iter().find(|(n, _)| n == k).unwrap().1.clone();
        assert_eq!(
            stored("gateway_url"),
            "http://wappaygw.alipay.com/service/rest.htm"
        );
        assert_eq!(
            stored("notify_verify_url"),
            "https://mapi.alipay.com/gateway.do"
        );
        assert_eq!(stored("mapi_url"), "https://mapi.alipay.com/gateway.do");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errs = validate(&pairs(&[
            ("partner", "1088101122136241"),
            ("key", "short"),
            ("mode", "b2b"),
            ("seller_email", "not an account"),
            ("gateway_url", "ftp://x"),
            ("colour", "red"),
        ]))
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "partner",
            "key",
            "mode",
            "seller_email",
            "gateway_url",
            "colour",
        ] {
            assert!(fields.contains(&f), "{f} missing from {errs:?}");
        }
    }

    #[test]
    fn rsa_needs_both_keys_and_c2c_needs_no_seller() {
        let errs = validate(&pairs(&[
            ("partner", "2088101122136241"),
            ("sign_type", "RSA"),
            ("mode", "c2c"),
        ]))
        .unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["private_key", "alipay_public_key"]);
        let (s, _) = validate(&pairs(&[
            ("partner", "2088101122136241"),
            ("sign_type", "0001"),
            ("mode", "C2C"),
            ("private_key", include_str!("../testdata/test_priv.pem")),
            (
                "alipay_public_key",
                include_str!("../testdata/test_pub.pem"),
            ),
        ]))
        .unwrap();
        assert_eq!(s.signer.sec_id(), "0001");
        assert_eq!(s.mode, Mode::C2c);
        assert_eq!(s.seller_email, None);
    }

    /// A legacy RSA merchant's own key is 1024-bit: a 2048-bit one (the open platform's size)
    /// is refused with the rule, since a notify_data of its blocks costs a call's fuel.
    #[test]
    fn a_legacy_rsa_private_key_is_1024_bit() {
        let errs = validate(&pairs(&[
            ("partner", "2088101122136241"),
            ("sign_type", "RSA"),
            ("seller_email", "seller@example.com"),
            (
                "private_key",
                include_str!("../testdata/openapi/keys/app_test_private_pkcs8.pem"),
            ),
            (
                "alipay_public_key",
                include_str!("../testdata/test_pub.pem"),
            ),
        ]))
        .unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "private_key");
        assert!(
            errs[0].reason.contains("1024-bit") && errs[0].reason.contains("this one is 2048-bit"),
            "{}",
            errs[0].reason
        );
    }

    #[test]
    fn seller_accounts() {
        for ok in [
            "a@b.cn",
            "13800138000",
            "2088101122136241",
            "tbshop@zhinet.net",
        ] {
            assert!(is_seller_account(ok), "{ok}");
        }
        for bad in [
            "",
            "a@b",
            "@b.cn",
            "1380013800",
            "2088",
            "a b@c.cn",
            "<x>@y.cn",
            "23800138000",
        ] {
            assert!(!is_seller_account(bad), "{bad}");
        }
    }

    /// A legacy step given an open-platform merchant's settings says so in one error (a vendor's
    /// review read "api: must be mapi or openapi" for `api = openapi`, and every open-platform
    /// setting listed as foreign); a repeated `api` is still a repeated field.
    #[test]
    fn open_platform_settings_in_a_legacy_step() {
        let pairs = |list: &[(&str, &str)]| {
            list.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        };
        let errors = validate(&pairs(&[
            ("api", "openapi"),
            ("app_id", "2021000000000001"),
            ("partner", "2088101122136241"),
        ]))
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "api");
        assert!(errors[0].reason.contains("legacy API"), "{errors:?}");
        let twice = validate(&pairs(&[("api", "openapi"), ("api", "mapi")])).unwrap_err();
        assert!(
            twice
                .iter()
                .any(|e| e.reason.contains("more than once") || e.reason.contains("twice")),
            "{twice:?}"
        );
    }

    #[test]
    fn urls() {
        assert!(is_http_url("http://127.0.0.1:8080/alipay/m1/notify"));
        assert!(is_http_url("https://wappaygw.alipay.com/service/rest.htm"));
        for bad in [
            "",
            "javascript:alert(1)",
            "//evil.com",
            "https://",
            "https://u@evil.com/",
            "http://a b/",
            // A port a browser reads otherwise, or no host at all (a vendor's review).
            "https://example.com:99999/gw",
            "https://example.com:0/gw",
            "https://example.com:443.evil.example/gw",
            "https://[::1/",
            "https://[::1]x:8080/",
            "https://:8080/",
            "https://[openapi.alipay.com]/gateway.do",
            "http://[127.0.0.1]:8080/n",
            "http://[fe80::1%25eth0]/n",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
        for good in [
            "https://[::1]:8443/gw",
            "http://[2001:db8::1]/n",
            "https://example.com:/gw",
            "https://example.com:65535/gw",
        ] {
            assert!(is_http_url(good), "{good}");
        }
        // A scheme in capitals is a scheme; a provider URL with a query is refused, saying why.
        assert!(is_http_url("HTTPS://MAPI.ALIPAY.COM/gateway.do"));
        assert_eq!(
            with_lower_scheme("HTTPS://MAPI.ALIPAY.COM/gateway.do"),
            "https://MAPI.ALIPAY.COM/gateway.do"
        );
        assert!(
            url_problem("https://mapi.alipay.com/gateway.do?service=x", false)
                .is_some_and(|r| r.contains("query"))
        );
    }
}
