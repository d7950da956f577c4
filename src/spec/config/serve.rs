//! `[serve]`: where `converge watch` serves its dashboard, `/api/v1/state`,
//! `/metrics` and the GitHub webhook. Off unless `listen` is set.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::super::diag::Code;
use super::super::model::Serve;
use super::super::toml_walk::{Ctx, Table};

const SERVE_KEYS: &[&str] = &["listen"];

const LISTEN_HINT: &str = "write a port (`listen = \"9464\"`, on 127.0.0.1) or an address and a port (`\"127.0.0.1:9464\"`, `\"[::1]:9464\"`)";

pub(super) fn read(ctx: &mut Ctx<'_>, root: &Table<'_, '_>) -> Serve {
    let Some(t) = root.table(ctx, "serve", "[serve]", SERVE_KEYS) else {
        return Serve::default();
    };
    let mut serve = Serve::default();
    if let Some(listen) = t.string(ctx, "listen") {
        match parse_listen(listen.get_ref()) {
            Ok(addr) => {
                if !addr.ip().is_loopback() {
                    ctx.warning(
                        Code::ExposedEndpoint,
                        listen.span(),
                        format!(
                            "`listen` in [serve] is `{addr}`, reachable from other hosts: the dashboard, /api/v1/state and /metrics have no authentication"
                        ),
                    )
                    .hint = Some(
                        "listen on 127.0.0.1 and put an authenticating reverse proxy in front, or keep the port to a trusted network".into(),
                    );
                }
                serve.listen = Some(addr);
            }
            Err(why) => {
                ctx.error(
                    Code::InvalidValue,
                    listen.span(),
                    format!("`listen` in [serve] is `{}`: {why}", listen.get_ref()),
                )
                .hint = Some(LISTEN_HINT.into());
            }
        }
    }
    t.finish(ctx);
    serve
}

/// A bare port (on 127.0.0.1), `localhost:PORT`, or an IP address and a port.
/// Host names other than `localhost` are refused: the reader resolves nothing.
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty".into());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return port(text).map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, p)) = text.rsplit_once(':') else {
        return Err("not a port nor an address and a port".into());
    };
    let p = port(p)?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p));
    }
    if host.parse::<IpAddr>().is_ok() {
        // An IPv6 address without brackets: `::1:9464` is ambiguous.
        return Err("an IPv6 address needs brackets (`[::1]:9464`)".into());
    }
    Err(format!(
        "`{host}` is not an IP address (converge resolves no host names here)"
    ))
}

fn port(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .map_err(|_| format!("`{text}` is not a port (0 to 65535)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_port_or_an_address_and_a_port() {
        let ok = [
            ("9464", "127.0.0.1:9464"),
            ("0", "127.0.0.1:0"),
            ("127.0.0.1:9464", "127.0.0.1:9464"),
            ("localhost:80", "127.0.0.1:80"),
            ("[::1]:9464", "[::1]:9464"),
            ("0.0.0.0:9464", "0.0.0.0:9464"),
        ];
        for (text, want) in ok {
            assert_eq!(
                parse_listen(text).map(|a| a.to_string()),
                Ok(want.to_owned()),
                "{text}"
            );
        }
        for bad in [
            "",
            "70000",
            "127.0.0.1",
            "example.com:80",
            "::1:9464",
            "127.0.0.1:x",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    fn compile_text(text: &str) -> (super::super::CompiledConfig, Vec<crate::spec::Diagnostic>) {
        let file = super::super::super::toml_walk::SourceFile {
            path: super::super::CONFIG_PATH.into(),
            text: text.into(),
        };
        let mut diags = Vec::new();
        let c = super::super::compile(&file, &[], &mut diags);
        (c, diags)
    }

    #[test]
    fn serve_is_off_unless_listen_is_set_and_a_bad_listen_is_located() {
        let (c, diags) = compile_text("");
        assert_eq!(c.config.serve.listen, None);
        assert!(diags.is_empty());
        let (c, diags) = compile_text("[serve]\n");
        assert_eq!(c.config.serve.listen, None);
        assert!(c.valid && diags.is_empty(), "{diags:?}");

        let (c, diags) = compile_text("[serve]\nlisten = \"9464\"\n");
        assert!(c.valid && diags.is_empty(), "{diags:?}");
        assert_eq!(
            c.config.serve.listen.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:9464")
        );

        let (c, diags) = compile_text("[serve]\nlisten = \"example.com:80\"\n");
        assert!(!c.valid);
        assert_eq!(diags.len(), 1, "{diags:?}");
        let d = &diags[0];
        assert_eq!(d.code, Code::InvalidValue);
        let at = d.location.as_ref().expect("located");
        assert_eq!((at.line, at.column), (2, 10));
        assert!(
            d.hint
                .as_deref()
                .is_some_and(|h| h.contains("127.0.0.1:9464"))
        );

        let (_, diags) = compile_text("[serve]\nlisten = \"9464\"\nport = 1\n");
        assert_eq!(diags[0].code, Code::UnknownKey, "{diags:?}");
    }

    #[test]
    fn a_listen_other_hosts_reach_is_accepted_with_a_warning() {
        let (c, diags) = compile_text("[serve]\nlisten = \"0.0.0.0:9464\"\n");
        assert!(c.valid, "a warning, not an error: {diags:?}");
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::ExposedEndpoint);
        assert_eq!(diags[0].severity, crate::spec::diag::Severity::Warning);
        assert!(diags[0].message.contains("no authentication"));
        assert!(c.config.serve.listen.is_some());
    }
}
