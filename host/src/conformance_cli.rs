//! `payhost conformance`: the conformance kit (`payhost-conformance`) run against a component this
//! binary loads (`--component`), or against a deployed host (`--against`). The kit owns the cases
//! and the report; this module gives it the component (over the host's own runtime) and a way to
//! start a host around it.

use payhost::config::Config;
use payhost::manifest::Manifest;
use payhost::runtime::plugin::FirstStep;
use payhost::runtime::plugin_api as api;
use payhost::runtime::PluginRuntime;
use payhost_conformance as kit;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The component under test, loaded by the host's runtime (limits, fuel, deadlines as in
/// production).
pub struct Loaded {
    pub runtime: PluginRuntime,
}

fn kit_info(i: api::PluginInfo) -> kit::PluginInfo {
    kit::PluginInfo {
        id: i.id,
        name: i.name,
        version: i.version,
        provider: i.provider,
        settings: i
            .settings
            .into_iter()
            .map(|f| kit::SettingField {
                name: f.name,
                label_zh: f.label_zh,
                label_en: f.label_en,
                kind: f.kind.as_str().to_owned(),
                required: f.required,
                secret: f.secret,
                rule: f.rule,
                options: f.options.into_iter().map(|o| o.value).collect(),
                default_value: f.default_value,
            })
            .collect(),
        notify_ack: i.notify_ack,
        notify_retry: i.notify_retry,
    }
}

impl kit::ComponentUnderTest for Loaded {
    fn info(&self) -> kit::BoxFuture<'_, Result<kit::PluginInfo, String>> {
        Box::pin(async move {
            let mut s = self.runtime.session().await.map_err(|e| e.to_string())?;
            s.describe().await.map(kit_info).map_err(|e| e.to_string())
        })
    }

    fn validate_settings<'a>(
        &'a self,
        settings: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, Result<Vec<(String, String)>, Vec<kit::FieldError>>> {
        Box::pin(async move {
            let trapped = |e: payhost::runtime::CallError| {
                vec![kit::FieldError {
                    field: String::new(),
                    reason: e.to_string(),
                }]
            };
            let mut s = self.runtime.session().await.map_err(trapped)?;
            match s.validate_settings(settings).await.map_err(trapped)? {
                Ok(v) => Ok(v),
                Err(fields) => Err(fields
                    .into_iter()
                    .map(|f| kit::FieldError {
                        field: f.field,
                        reason: f.reason,
                    })
                    .collect()),
            }
        })
    }

    fn verify_notification<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        form: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, kit::CallOutcome> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return kit::CallOutcome::Trapped(e.to_string()),
            };
            match s.verify_notification_first_step(settings, form).await {
                Ok(Ok(FirstStep::Done(_))) => kit::CallOutcome::Verified,
                Ok(Ok(FirstStep::Send { url })) => kit::CallOutcome::WantsToSend { url },
                Ok(Err(e)) => kit::CallOutcome::Refused(e.to_string()),
                Err(e) => kit::CallOutcome::Trapped(e.to_string()),
            }
        })
    }

    fn verify_return<'a>(
        &'a self,
        settings: &'a kit::Pairs,
        query: &'a kit::Pairs,
    ) -> kit::BoxFuture<'a, kit::CallOutcome> {
        Box::pin(async move {
            let mut s = match self.runtime.session().await {
                Ok(s) => s,
                Err(e) => return kit::CallOutcome::Trapped(e.to_string()),
            };
            match s.verify_return(settings, query).await {
                Ok(Ok(_)) => kit::CallOutcome::Verified,
                Ok(Err(e)) => kit::CallOutcome::Refused(e.to_string()),
                Err(e) => kit::CallOutcome::Trapped(e.to_string()),
            }
        })
    }

    fn call_limit(&self) -> Duration {
        Duration::from_millis(self.runtime.manifest().limits.call_timeout_ms)
    }
}

/// Starts `payhost serve` in-process around one manifest: a temporary database, a random operator
/// token, the kit's origins allowed as `[outbound] allowed_origins` does.
pub struct Launcher {
    pub manifest: PathBuf,
    pub work_dir: PathBuf,
    pub cache_dir: PathBuf,
}

/// Stops the launched host when the kit drops it.
struct Stop(payhost::server::Running);

impl Drop for Stop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

impl kit::HostLauncher for Launcher {
    fn start(
        &self,
        extra_allowed_origins: Vec<String>,
    ) -> kit::BoxFuture<'_, Result<kit::RunningHost, String>> {
        Box::pin(async move {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("cannot find a free port: {e}"))?
                .port();
            let token = format!("conformance-{}", payhost::auth::new_merchant_token());
            let dir = self.work_dir.join(format!("host-{port}"));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let origins: Vec<String> = extra_allowed_origins.iter().map(|o| toml_str(o)).collect();
            let text = format!(
                "listen = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\
                 database = {db}\napi_token = {token}\ncache_dir = {cache}\n\
                 [plugin]\nmanifest = {manifest}\n[outbound]\nallowed_origins = [{origins}]\n\
                 [recovery]\nenabled = false\n",
                db = toml_str(&dir.join("payhost.db").display().to_string()),
                token = toml_str(&token),
                cache = toml_str(&self.cache_dir.display().to_string()),
                manifest = toml_str(&self.manifest.display().to_string()),
                origins = origins.join(", "),
            );
            let config = Config::parse(&text, &dir).map_err(|e| format!("{e:#}"))?;
            let app = payhost::server::build_app(config)
                .await
                .map_err(|e| format!("{e:#}"))?;
            let running = payhost::server::start(app, std::future::pending())
                .await
                .map_err(|e| format!("{e:#}"))?;
            Ok(kit::RunningHost {
                base_url: format!("http://127.0.0.1:{port}"),
                token,
                guard: Box::new(Stop(running)),
            })
        })
    }
}

/// Loads the component for `--component X.wasm [--manifest M]`, and writes the manifest the
/// launched host uses: M with its component path pointing at X (its pinned sha256 must match
/// X), or, without M, one made from the component's own `describe`.
pub async fn load(component: &Path, manifest: Option<&Path>, work_dir: &Path) -> anyhow::Result<(Loaded, PathBuf)> {
    let component = std::path::absolute(component)?;
    let manifest_path = work_dir.join("plugin.toml");
    let text = match manifest {
        Some(m) => {
            let mut table: toml::Table = toml::from_str(&std::fs::read_to_string(m)?)
                .map_err(|e| anyhow::anyhow!("{} is not a plugin manifest: {e}", m.display()))?;
            let c = table
                .get_mut("component")
                .and_then(|c| c.as_table_mut())
                .ok_or_else(|| anyhow::anyhow!("{}: no [component] table", m.display()))?;
            c.insert(
                "path".into(),
                toml::Value::String(component.display().to_string()),
            );
            toml::to_string(&table)?
        }
        None => {
            let synthetic = Manifest::synthetic(&component)?;
            let rt = PluginRuntime::load(&synthetic, None, payhost::net::Client::new()).await?;
            manifest_from_describe(&synthetic, &rt.info)
        }
    };
    std::fs::write(&manifest_path, text)?;
    let loaded = Manifest::load(&manifest_path)?;
    let runtime = PluginRuntime::load(&loaded, None, payhost::net::Client::new()).await?;
    Ok((Loaded { runtime }, manifest_path))
}

/// A manifest that says what the component says about itself (for a bare component).
fn manifest_from_describe(m: &Manifest, info: &api::PluginInfo) -> String {
    let mut out = format!(
        "id = {}\nname = {}\nversion = {}\n[wit]\npackage = {}\nversion = {}\nworld = {}\n\
         [component]\npath = {}\nsha256 = {}\n[outbound]\nallowed_hosts = []\n",
        toml_str(&info.id),
        toml_str(&info.name),
        toml_str(&info.version),
        toml_str(&m.wit.package),
        toml_str(&m.wit.version),
        toml_str(&m.wit.world),
        toml_str(&m.component.path.display().to_string()),
        toml_str(&m.component.sha256),
    );
    for f in &info.settings {
        out.push_str(&format!(
            "[[settings]]\nname = {}\nlabel_zh = {}\nlabel_en = {}\nkind = {}\nrequired = {}\nsecret = {}\nrule = {}\n",
            toml_str(&f.name),
            toml_str(&f.label_zh),
            toml_str(&f.label_en),
            toml_str(f.kind.as_str()),
            f.required,
            f.secret,
            toml_str(&f.rule),
        ));
    }
    out
}
