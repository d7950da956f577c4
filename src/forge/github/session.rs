//! The GitHub side of one tick: the token, read once (its warning given
//! once), and one [`Client`] shared by observing, acting and publishing —
//! one connection pool, one read of the ETag cache and of the cooldown, one
//! write of them at the end.

use std::cell::{OnceCell, RefCell};
use std::path::Path;
use std::rc::Rc;

use super::client::{Client, ClientError};
use crate::rundir::Layout;
use crate::spec::Github;
use crate::time::Timestamp;

pub struct Session<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    now: Timestamp,
    token: OnceCell<Option<String>>,
    /// The client, by the API URL and repository it was made for.
    client: RefCell<Option<(String, Rc<Client>)>>,
}

impl std::fmt::Debug for Session<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("now", &self.now).finish()
    }
}

impl<'a> Session<'a> {
    /// A session at `now`, its token read from `env` when first needed.
    pub fn new(env: &'a dyn Fn(&str) -> Option<String>, now: Timestamp) -> Self {
        Session {
            env,
            now,
            token: OnceCell::new(),
            client: RefCell::new(None),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// The token ([`super::token`]), looked up once.
    pub fn token(&self) -> Option<&str> {
        self.token.get_or_init(|| super::token(self.env)).as_deref()
    }

    /// The client for `config`'s repository, made on first use. `None`
    /// without a token.
    pub fn client(
        &self,
        common_dir: &Path,
        config: &Github,
    ) -> Option<Result<Rc<Client>, ClientError>> {
        let token = self.token()?;
        let key = format!("{} {}", config.api_url, config.repo);
        if let Some((made_for, client)) = self.client.borrow().as_ref()
            && *made_for == key
        {
            return Some(Ok(Rc::clone(client)));
        }
        let dir = Layout::new(common_dir).forge();
        let made = Client::new(&config.api_url, &config.repo, token, dir, self.now).map(Rc::new);
        if let Ok(client) = &made {
            *self.client.borrow_mut() = Some((key, Rc::clone(client)));
        }
        Some(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn the_token_is_read_once_and_one_client_serves_the_tick() {
        let reads = Cell::new(0);
        let env = |name: &str| {
            reads.set(reads.get() + 1);
            (name == "CONVERGE_GITHUB_TOKEN").then(|| "t0ken".to_owned())
        };
        let session = Session::new(&env, Timestamp::from_unix(1_800_000_000));
        assert_eq!(session.token(), Some("t0ken"));
        assert_eq!(session.token(), Some("t0ken"));
        assert_eq!(reads.get(), 1);
        let dir = tempfile::tempdir().expect("dir");
        let config = github("acme/widgets");
        let one = session
            .client(dir.path(), &config)
            .expect("a token")
            .expect("a client");
        let two = session
            .client(dir.path(), &config)
            .expect("a token")
            .expect("a client");
        assert!(Rc::ptr_eq(&one, &two));
        let other = github("acme/gadgets");
        let three = session
            .client(dir.path(), &other)
            .expect("a token")
            .expect("a client");
        assert!(!Rc::ptr_eq(&one, &three));
    }

    #[test]
    fn without_a_token_there_is_no_client() {
        let env = |_: &str| None;
        let session = Session::new(&env, Timestamp::from_unix(0));
        let dir = tempfile::tempdir().expect("dir");
        assert!(session.client(dir.path(), &github("a/b")).is_none());
    }

    fn github(repo: &str) -> Github {
        Github {
            repo: repo.into(),
            api_url: "http://127.0.0.1:9".into(),
            remote: "origin".into(),
            merge_method: crate::spec::MergeMethod::Merge,
            max_open_prs: 10,
            prs_per_hour: 4,
            labels: Vec::new(),
            checks_timeout: std::time::Duration::from_secs(60),
            dashboard: None,
        }
    }

    #[test]
    fn the_token_is_converge_s_own_first_then_the_actions_one_never_blank() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let both = env(&[("CONVERGE_GITHUB_TOKEN", " mine\n"), ("GITHUB_TOKEN", "ci")]);
        assert_eq!(super::super::token(&both).as_deref(), Some("mine"));
        let blank = env(&[("CONVERGE_GITHUB_TOKEN", "  "), ("GITHUB_TOKEN", "ci")]);
        assert_eq!(super::super::token(&blank).as_deref(), Some("ci"));
        assert_eq!(super::super::token(&env(&[])), None);
    }
}
