//! `hookwarden ops audit …`: the audit trail's entries and the server's
//! check of its chain.

use super::{views, Ops, Paging};
use std::process::ExitCode;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Lists audit entries, oldest first.
    Entries {
        #[command(flatten)]
        paging: Paging,
    },
    /// Has the server check the chain; prints its head (SEQ:HASH, keep it
    /// outside the database) and exits non-zero when the chain is broken.
    Verify {
        /// A head recorded earlier: fails unless the chain still holds that
        /// entry unchanged (finds removed newest entries and rewrites).
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
    },
}

pub async fn run(command: Command, ops: &Ops) -> anyhow::Result<ExitCode> {
    match command {
        Command::Entries { paging } => {
            let path = ["api", "v1", "audit-entries"];
            ops.list(&path, [], paging, views::AUDIT).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { head } => {
            let v = ops
                .client
                .get(&["api", "v1", "audit-chain"], &[("head", head)])
                .await?;
            let (text, valid) = views::audit_chain(&v);
            ops.out.show(&v, |_| text)?;
            Ok(if valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}
