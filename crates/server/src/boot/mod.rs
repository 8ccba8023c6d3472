//! Building and running the application: one store, the public and ops
//! listeners, the delivery worker and the NATS consumer as separate tasks
//! sharing one cancellation token. Tests build it with port 0 and step the
//! worker themselves.

#[cfg(feature = "dev-certs")]
pub mod devcerts;
pub mod keys;
pub mod telemetry;
pub(crate) mod tls;

use crate::config::Settings;
use crate::http;
use crate::inbound::forward::{ForwardQueue, Forwarding};
use crate::outbound::dispatch::births::DispatcherBirths;
use crate::outbound::dispatch::worker::{Deliveries, DeliveryQueue, Dispatcher};
use crate::outbound::nats::Nats;
use crate::shared::client::{DeliveryClient, Lookup, SystemLookup};
use crate::shared::clock::Clock;
use crate::shared::jwt::JwtVerifier;
use crate::shared::pump::Pump;
use crate::shared::ratelimit::LocalRateLimiter;
use crate::shared::ratelimit::RateLimiter;
use crate::shared::redis::{Redis, RedisRateLimiter};
use crate::shared::retry::DeadLetterSink;
use crate::shared::state::{AppState, Shared};
use anyhow::Context;
use secrecy::ExposeSecret;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How often certificate and JWKS files are checked for changes.
const CERT_RELOAD_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// A listener's TLS configuration and the certificate it reloads.
type ListenerTls = Option<(
    Arc<rustls::ServerConfig>,
    Arc<crate::boot::tls::ReloadingCert>,
)>;

pub struct Application {
    state: AppState,
    public: TcpListener,
    ops: TcpListener,
    /// The console's and operator API's private listener, when configured.
    operator: Option<TcpListener>,
    public_tls: ListenerTls,
    ops_tls: ListenerTls,
    dispatcher: Arc<Dispatcher>,
    forwarder: Arc<Forwarder>,
    nats: Option<Arc<Nats>>,
    /// Posts spans to the OTLP endpoint, when one is set.
    traces: Option<crate::shared::traces::Exporter>,
}

/// The forwarding worker: the pump over the ingress forwarding queue.
pub type Forwarder = Pump<ForwardQueue>;

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        Self::build_with(settings, Arc::new(SystemLookup), Clock::system()).await
    }

    /// As `build`, with a name resolver and a clock of the caller's choice
    /// (tests).
    pub async fn build_with(
        settings: Settings,
        lookup: Arc<dyn Lookup>,
        clock: Clock,
    ) -> anyhow::Result<Self> {
        // Install the recorder before anything counts, or early counts are lost.
        crate::shared::metrics::handle();
        let keyring = keys::load_keyring(&settings)?;
        let identity = crate::shared::identity::IdentitySigner::new(&keyring)?;
        let hs256 = keys::jwt_hs256_secret(&settings)?;
        let jwt = JwtVerifier::new(
            hs256.as_ref(),
            settings.jwt_jwks_file.as_deref(),
            settings.jwt_issuer.clone(),
            settings.jwt_audience.clone(),
        )?;
        // Fetched once before anything listens. A URL that does not parse or
        // a CA file that does not load stops start-up (configuration); a
        // fetch that fails does not: the ingress and delivery never use
        // tokens, so the service starts, refuses tokens until keys load,
        // retries the URL in the background and `/ready` says degraded.
        let jwt = match &settings.jwt_jwks_url {
            Some(url) => {
                jwt.with_jwks_url(
                    url,
                    settings.jwt_jwks_ca_file.as_deref(),
                    settings.jwt_jwks_refresh,
                )
                .await?
            }
            None => jwt,
        };
        if !jwt.is_configured() {
            tracing::warn!(
                "no token verification key is configured: the tenant API refuses every request"
            );
        } else if !jwt.has_keys() && !matches!(jwt.url_status(), Some(Err(_))) {
            // (A URL that did not load has said so, as an error.)
            tracing::warn!(
                "the JWKS holds no key: the tenant API refuses every token until it does"
            );
        }
        // Certificates and keys load before anything listens: a bad file
        // stops start-up with its name, before "serving" is ever said.
        let public_tls = settings
            .tls()
            .as_ref()
            .map(crate::boot::tls::server_config)
            .transpose()
            .context("HOOKWARDEN_TLS_*: the public listener's TLS")?;
        let ops_tls = settings
            .ops_tls()
            .as_ref()
            .map(crate::boot::tls::server_config)
            .transpose()
            .context("HOOKWARDEN_OPS_TLS_*: the ops listener's TLS")?;
        let db_url = settings.database_url.expose_secret().to_owned();
        let store = hookwarden_store::connect(&db_url).await.with_context(|| {
            format!(
                "connecting to the database at {}",
                hookwarden_store::redact_url(&db_url)
            )
        })?;
        if settings.run_migrations {
            store
                .migrate()
                .await
                .context("running database migrations")?;
        }
        // The database enforces the cap; it reads this replica's setting.
        store
            .set_max_webhooks_per_account(settings.max_webhooks_per_account)
            .await
            .context("writing HOOKWARDEN_MAX_WEBHOOKS_PER_ACCOUNT to the database (are its migrations applied?)")?;
        crate::shared::audit::load_chain_key(store.as_ref(), &keyring).await?;
        let nats = match &settings.nats() {
            Some(n) => Some(Arc::new(Nats::connect(n).await?)),
            None => None,
        };
        let redis = match &settings.redis_url {
            Some(url) => Some(Redis::connect(url.expose_secret(), &settings.redis_prefix).await?),
            None => None,
        };
        let limiter: Arc<dyn RateLimiter> = match &redis {
            Some(r) => Arc::new(RedisRateLimiter::new(r.clone())),
            None => Arc::new(LocalRateLimiter::default()),
        };
        let public = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("binding {}", settings.listen))?;
        let ops = TcpListener::bind(settings.ops_listen)
            .await
            .with_context(|| format!("binding {}", settings.ops_listen))?;
        let operator = match settings.operator_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding HOOKWARDEN_OPERATOR_LISTEN {addr}"))?,
            ),
            None => None,
        };
        let policy = settings.address_policy();
        let client = DeliveryClient::new(
            policy.clone(),
            settings.delivery_timeout,
            lookup,
            settings.delivery_ca_file.as_deref(),
        )?;
        let wake: Arc<crate::shared::pump::Wake> = Default::default();
        let (traces, exporter) = match &settings.otlp_endpoint {
            Some(endpoint) => {
                let (traces, exporter) = crate::shared::traces::Traces::to(endpoint)
                    .context("HOOKWARDEN_OTLP_ENDPOINT: the OTLP client")?;
                (traces, Some(exporter))
            }
            None => Default::default(),
        };
        let operational = Arc::new(crate::shared::operational::Operational::new(
            Arc::clone(&store),
            Arc::clone(&wake),
            clock.clone(),
        ));
        let state = AppState(Arc::new(Shared {
            activity: Arc::new(crate::shared::activity::Activity::new(clock.clone())),
            clock,
            store,
            operational,
            keyring: Arc::new(keyring),
            jwt,
            limiter,
            policy,
            wake,
            nats: nats.as_ref().map(|n| n.client.clone()),
            redis,
            forward_wake: Default::default(),
            identity: Arc::new(identity),
            schemas: Default::default(),
            refusals: crate::shared::refusals::Refusals::new(settings.failed_auth_limit_per_minute),
            integrations: Default::default(),
            sink: Default::default(),
            traces,
            settings,
        }));
        crate::inbound::integrations::apply_configured(&state, &state.settings.integrations)
            .await?;
        crate::http::operator::operational::apply_configured(
            &state,
            &state.settings.operational_webhooks,
        )
        .await?;
        let sink = nats.clone().map(|n| n as Arc<dyn DeadLetterSink>);
        let queue = DeliveryQueue::new(Deliveries::from(&state), client, sink);
        let dispatcher = Arc::new(Dispatcher::new(
            queue,
            DeliveryQueue::pump_config(&state.settings, state.clock.clone()),
            state.wake.clone(),
        ));
        let forward_sink = nats.clone().map(|n| n as Arc<dyn DeadLetterSink>);
        let forwarder = Arc::new(Forwarder::new(
            ForwardQueue::new(Forwarding::from(&state), forward_sink)?,
            ForwardQueue::pump_config(&state.settings, state.clock.clone()),
            state.forward_wake.clone(),
        ));
        Ok(Self {
            state,
            public,
            ops,
            operator,
            public_tls,
            ops_tls,
            dispatcher,
            forwarder,
            nats,
            traces: exporter,
        })
    }

    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or_else(|_| self.state.settings.listen)
    }

    pub fn ops_addr(&self) -> SocketAddr {
        self.ops
            .local_addr()
            .unwrap_or_else(|_| self.state.settings.ops_listen)
    }

    /// The private operator listener's address, when one is configured.
    pub fn operator_addr(&self) -> Option<SocketAddr> {
        self.operator.as_ref().and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    pub fn dispatcher(&self) -> Arc<Dispatcher> {
        self.dispatcher.clone()
    }

    pub fn forwarder(&self) -> Arc<Forwarder> {
        self.forwarder.clone()
    }

    /// Serves and works until `shutdown` is cancelled, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let Self {
            state,
            public,
            ops,
            operator,
            public_tls,
            ops_tls,
            dispatcher,
            forwarder,
            nats,
            traces,
        } = self;
        // Spans are posted until the workers have drained (their last
        // spans included), so the exporter stops on a token of its own.
        let traces_stop = CancellationToken::new();
        let traces = traces.map(|exporter| tokio::spawn(exporter.run(traces_stop.clone())));
        let (public_addr, ops_addr) = (public.local_addr()?, ops.local_addr()?);
        let tls = |t: ListenerTls| {
            t.map(|(config, cert)| {
                // Renewed certificates are picked up without a restart.
                cert.watch(CERT_RELOAD_INTERVAL, shutdown.clone());
                config
            })
        };
        let (public_tls, ops_tls) = (tls(public_tls), tls(ops_tls));
        // A changed JWKS file is picked up like a renewed certificate.
        state
            .jwt
            .watch(CERT_RELOAD_INTERVAL, state.clock.clone(), shutdown.clone());
        let scheme = |t: &Option<_>| if t.is_some() { "https" } else { "http" };
        let (public_scheme, ops_scheme) = (scheme(&public_tls), scheme(&ops_tls));
        // With a private operator listener, the public one hides the
        // console and the operator API; the private one serves everything.
        let operator_srv = operator.map(|listener| {
            http::serve::serve(
                listener,
                http::public_router(state.clone(), false),
                public_tls.clone(),
                state.settings.trusted_proxies.clone(),
                shutdown.clone(),
            )
        });
        let operator_private = operator_srv.is_some();
        let public_srv = http::serve::serve(
            public,
            http::public_router(state.clone(), operator_private),
            public_tls,
            state.settings.trusted_proxies.clone(),
            shutdown.clone(),
        );
        let operator_srv = async move {
            match operator_srv {
                Some(srv) => srv.await,
                None => Ok(()),
            }
        };
        let ops_srv = http::serve::serve(
            ops,
            http::ops_router(state.clone()),
            ops_tls,
            // No proxy fronts the ops listener: nobody is exempt there.
            Vec::new(),
            shutdown.clone(),
        );
        let mut workers = tokio::task::JoinSet::new();
        workers.spawn(crate::shared::refusals::Refusals::run(
            state.clone(),
            shutdown.clone(),
        ));
        workers.spawn(Arc::clone(&state.activity).run(Arc::clone(&state.store), shutdown.clone()));
        workers.spawn(crate::web::session::prune(
            Arc::clone(&state.store),
            state.clock.clone(),
            shutdown.clone(),
        ));
        workers.spawn(crate::shared::retention::run(
            Arc::clone(&state.store),
            state.clock.clone(),
            state.settings.retention,
            shutdown.clone(),
        ));
        workers.spawn(crate::shared::audit::watch_head(
            std::sync::Arc::clone(&state.store),
            Arc::clone(&state.operational),
            crate::shared::audit::HEAD_LOG_INTERVAL,
            shutdown.clone(),
        ));
        if state.settings.delivery_worker {
            // First tries go straight to this worker when it has room.
            state
                .store
                .hand_births_to(Some(Arc::new(DispatcherBirths::new(&dispatcher))));
            workers.spawn(dispatcher.run(shutdown.clone()));
        }
        if state.settings.ingress_worker {
            workers.spawn(forwarder.run(shutdown.clone()));
        }
        if let (Some(nats), true) = (nats, state.settings.nats_consumer) {
            let (st, sd) = (state.clone(), shutdown.clone());
            workers.spawn(async move {
                if let Err(e) = nats.consume(st, sd.clone()).await {
                    tracing::error!(error.message = %format!("{e:#}"), "NATS intake stopped with an error");
                    sd.cancel();
                }
            });
        }
        // Both listeners are bound and their TLS loaded: connections are
        // accepted from here on.
        tracing::info!(
            public = %format!("{public_scheme}://{public_addr}"),
            ops = %format!("{ops_scheme}://{ops_addr}"),
            backend = state.store.backend(),
            production = state.settings.is_production(), "hookwarden serving"
        );
        let served = tokio::try_join!(public_srv, ops_srv, operator_srv);
        shutdown.cancel();
        state.store.hand_births_to(None);
        while workers.join_next().await.is_some() {}
        traces_stop.cancel();
        if let Some(traces) = traces {
            let _ = traces.await;
        }
        served.context("serving HTTP")?;
        tracing::info!("hookwarden stopped");
        Ok(())
    }
}
