//! Command implementations.
pub mod data;
pub mod demo;
pub mod guard;
pub mod models;
pub mod monitor;
pub mod rag;
pub mod redteam;
pub mod rollout;
pub mod runs;
pub mod serve;
pub mod train;
pub mod tune;

use keel_core::ErrorClass;

use crate::cli::{
    AuditCommand, Cli, Command, DataCommand, DemoCommand, EvalCommand, GuardCommand, KeysCommand,
    ModelsCommand, MonitorCommand, RagCommand, RedteamCommand, RunsCommand,
};

/// An error raised by the command layer itself, with its class.
#[derive(Debug)]
pub struct CliError {
    pub class: ErrorClass,
    pub message: String,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

pub fn input_error(message: impl Into<String>) -> anyhow::Error {
    CliError {
        class: ErrorClass::Input,
        message: message.into(),
    }
    .into()
}

/// Where state lives: `[store]` in keel.toml, under the `KEEL_*` variables, under the flags.
fn store_config(cli: &Cli) -> anyhow::Result<keel_store::StoreConfig> {
    let file = keel_app::config::store(None)?;
    let mut config = file.with_env()?;
    if let Some(u) = &cli.database_url {
        config.database_url = Some(u.clone());
    }
    if let Some(u) = &cli.artifact_url {
        config.artifact_url = Some(u.clone());
    }
    config.backend()?;
    Ok(config)
}

/// Runs a command; returns the exit code for outcomes that are not errors (0, or 1 for a failed check).
pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let home = cli.home();
    keel_store::configure(store_config(&cli)?);
    match cli.command {
        Command::Init(a) => models::init(&home, &a),
        Command::Migrate(a) => models::migrate(&home, &a),
        Command::Worker(a) => rollout::jobs_cmd(
            &home,
            &crate::cli::JobsCommand::Work(crate::cli::JobsWorkArgs {
                forever: true,
                json: a.json,
            }),
        ),
        Command::Data { command } => match command {
            DataCommand::Validate(a) => data::validate(&home, &a),
            DataCommand::Profile(a) => data::profile(&a),
            DataCommand::Schema(a) => data::schema(&a),
        },
        Command::Train(a) => train::train_cmd(&home, &a),
        Command::Tune(a) => tune::tune(&home, &a),
        Command::Quickstart(a) => train::quickstart(&home, &a),
        Command::Models { command } => match command {
            ModelsCommand::List(a) => models::list(&home, &a),
            ModelsCommand::Show(a) => models::show(&home, &a),
            ModelsCommand::Card(a) => models::card(&home, &a),
            ModelsCommand::Alias(a) => models::alias(&home, &a),
            ModelsCommand::Rollback(a) => models::rollback(&home, &a),
            ModelsCommand::Import(a) => models::import(&home, &a),
            ModelsCommand::Delete(a) => runs::delete(&home, &a),
            ModelsCommand::Archive(a) => runs::archive(&home, &a),
            ModelsCommand::Annotate(a) => runs::annotate(&home, &a),
        },
        Command::Runs { command } => match command {
            RunsCommand::List(a) => runs::list(&home, &a),
            RunsCommand::Show(a) => runs::show(&home, &a),
            RunsCommand::Compare(a) => runs::compare(&home, &a),
            RunsCommand::Experiments(a) => runs::experiments(&home, &a),
        },
        Command::Serve(a) => serve::serve(&home, &a),
        Command::Keys { command } => match command {
            KeysCommand::Create(a) => serve::keys_create(&home, &a),
            KeysCommand::List(a) => serve::keys_list(&home, &a),
            KeysCommand::Revoke(a) => serve::keys_revoke(&home, &a),
        },
        Command::Predict(a) => serve::predict(&home, &a),
        Command::Monitor { command } => match command {
            MonitorCommand::Drift(a) => monitor::drift(&a),
            MonitorCommand::Report(a) => monitor::report(&home, &a),
        },
        Command::Feedback(a) => monitor::feedback(&home, &a),
        Command::Audit { command } => match command {
            AuditCommand::Verify(a) => monitor::audit_verify(&home, &a),
            AuditCommand::Export(a) => monitor::audit_export(&home, &a),
            AuditCommand::Keygen(a) => monitor::audit_keygen(&a),
        },
        Command::Retrain(a) => rollout::retrain_cmd(&home, &a),
        Command::Jobs { command } => rollout::jobs_cmd(&home, &command),
        Command::Deploy(a) => rollout::deploy_cmd(&home, &a),
        Command::Rollback(a) => rollout::rollback_cmd(&home, &a),
        Command::Demo { command } => match command {
            DemoCommand::Loop(a) => demo::demo_loop(&home, &a),
        },
        Command::Rag { command } => match command {
            RagCommand::Ingest(a) => rag::ingest(&home, &a),
            RagCommand::Query(a) => rag::query(&home, &a),
            RagCommand::List(a) => rag::list(&home, &a),
            RagCommand::Chunks(a) => rag::chunks(&home, &a),
            RagCommand::Delete(a) => rag::delete(&home, &a),
            RagCommand::Tune(a) => rag::tune(&home, &a),
        },
        Command::Eval { command } => match command {
            EvalCommand::Retrieval(a) => rag::eval_retrieval(&home, &a),
            EvalCommand::Answers(a) => rag::eval_answers(&home, &a),
        },
        Command::Guard { command } => match command {
            GuardCommand::Scan(a) => guard::scan(&home, &a),
            GuardCommand::Train(a) => guard::train(&home, &a),
            GuardCommand::Eval(a) => guard::eval(&home, &a),
            GuardCommand::PiiSet(a) => guard::pii_set(&a),
            GuardCommand::PiiEval(a) => guard::pii_eval(&home, &a),
        },
        Command::Redteam { command } => match command {
            RedteamCommand::Run(a) => redteam::run(&a),
        },
        Command::Openapi(a) => {
            let spec = keel_server::openapi::spec_json();
            match &a.out {
                Some(p) => train::write_atomic(p, format!("{spec}\n").as_bytes())?,
                None => println!("{spec}"),
            }
            Ok(0)
        }
        Command::Assets(a) => {
            crate::assets::fetch(&a.group, a.json)?;
            if a.json {
                crate::output::print_json(
                    &serde_json::json!({"cache": crate::assets::cache_dir(), "group": a.group}),
                );
            }
            Ok(0)
        }
    }
}

/// Runs a future on the command's runtime (the CLI is synchronous; the store is async). One runtime per
/// process: a store opened in one call is used in the next, and its database connections belong to the
/// runtime that opened them (a runtime per call left PostgreSQL connections on a runtime already shut down:
/// "A Tokio 1.x context was found, but it is being shutdown").
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
        })
        .block_on(f)
}
