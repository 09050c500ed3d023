//! The server's route table: which request paths are served, and how.
//!
//! Owns: the mapping from an upgrade request's path to a [`Route`]. A
//! connection only reports the target it was asked for; the core looks it
//! up here when the upgrade arrives and answers an unknown path `404`
//! through the refusal path (`Rejection::NotFound`).
//! Must not touch: what a route does with messages (the core and the hub).

/// What a connection serves, chosen by the request path at the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Every message is sent back as it came.
    Echo,
    /// The hub's JSON protocol (channels, users).
    Hub,
    /// Gateway mode (`/{gateway.stage}`): the backend decides the upgrade
    /// (`$connect`) and hears every message and the end.
    Gateway,
}

/// Paths and their routes (exact matches on the path, query ignored).
#[derive(Debug, Clone)]
pub struct Routes {
    table: Vec<(Box<str>, Route)>,
}

impl Default for Routes {
    /// `/echo` and `/ws` (README "Routes").
    fn default() -> Self {
        Self::new([("/echo", Route::Echo), ("/ws", Route::Hub)])
    }
}

impl Routes {
    /// The server's table: `/echo`, `/ws`, and `/{gateway.stage}` when
    /// gateway mode is on.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        let mut r = Self::default();
        if cfg.gateway.enabled() {
            let path = format!("/{}", cfg.gateway.stage);
            // Built once per core at start; the stage never shadows /echo
            // or /ws (those come first).
            r.table.push((path.into(), Route::Gateway));
        }
        r
    }

    /// A table from (path, route) pairs; the first entry for a path wins.
    pub fn new<'a>(entries: impl IntoIterator<Item = (&'a str, Route)>) -> Self {
        Self {
            table: entries.into_iter().map(|(p, r)| (p.into(), r)).collect(),
        }
    }

    /// The route for a request path, if any.
    pub fn get(&self, path: &str) -> Option<Route> {
        self.table
            .iter()
            .find(|(p, _)| **p == *path)
            .map(|&(_, r)| r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_paths_only() {
        let r = Routes::default();
        assert_eq!(r.get("/echo"), Some(Route::Echo));
        assert_eq!(r.get("/ws"), Some(Route::Hub));
        for other in ["/", "/echo/", "/ECHO", "/wss", ""] {
            assert_eq!(r.get(other), None, "{other:?}");
        }
    }

    #[test]
    fn the_gateway_stage_is_a_route_only_in_gateway_mode() {
        let mut cfg = crate::config::Config::default();
        assert_eq!(Routes::from_config(&cfg).get("/production"), None);
        cfg.gateway.backend = Some("http://127.0.0.1:8000/ws/".into());
        cfg.gateway.stage = "dev".into();
        let r = Routes::from_config(&cfg);
        assert_eq!(r.get("/dev"), Some(Route::Gateway));
        assert_eq!(r.get("/ws"), Some(Route::Hub));
        assert_eq!(r.get("/production"), None);
    }
}
