//! A deterministic multi-service JSON log generator: requests flow through a few service
//! paths, each hop logs its response (innermost first), and scenarios add cascading
//! outages (503 propagated to every caller), one-service storms (callers fall back with
//! 200) and isolated 503s. Used by the end-to-end tests, the benchmark and to produce the
//! bundled example stream.

use std::io::{self, Write};

/// splitmix64: small, fast and reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Every request whose path reaches `root` fails there, and every caller returns 503.
pub struct Outage {
    pub root: &'static str,
    pub from_s: u32,
    pub to_s: u32,
}

/// `service` answers 503, but its callers recover (retry or cache) and answer 200.
pub struct Storm {
    pub service: &'static str,
    pub from_s: u32,
    pub to_s: u32,
}

pub struct Scenario {
    /// Epoch milliseconds of the first second.
    pub start_ms: i64,
    pub seconds: u32,
    pub requests_per_sec: u32,
    pub outages: Vec<Outage>,
    pub storms: Vec<Storm>,
    /// Single 503s (a callee fails once, the caller's retry succeeds), spread evenly.
    pub isolated_503s: u32,
    pub seed: u64,
}

struct Route {
    method: &'static str,
    path: &'static str,
    hops: &'static [&'static str],
    weight: u64,
}

const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/api/checkout",
        hops: &["gateway", "checkout", "payment"],
        weight: 3,
    },
    Route {
        method: "GET",
        path: "/api/products",
        hops: &["gateway", "catalog", "inventory"],
        weight: 4,
    },
    Route {
        method: "GET",
        path: "/api/search",
        hops: &["gateway", "search"],
        weight: 2,
    },
    Route {
        method: "POST",
        path: "/api/login",
        hops: &["gateway", "auth"],
        weight: 1,
    },
];

const BACKGROUND: &[(&str, &str, &str)] = &[
    ("inventory", "info", "stock cache refreshed"),
    (
        "payment",
        "debug",
        "connection pool stats: 12 idle, 3 active",
    ),
    ("auth", "info", "rotated session signing key"),
    ("search", "warn", "slow query: took 812ms"),
];

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .expect("in range")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Scenario {
    fn in_outage(&self, service: &str, sec: u32) -> bool {
        self.outages
            .iter()
            .any(|o| o.root == service && (o.from_s..o.to_s).contains(&sec))
    }

    fn in_storm(&self, service: &str, sec: u32) -> bool {
        self.storms
            .iter()
            .any(|s| s.service == service && (s.from_s..s.to_s).contains(&sec))
    }

    /// Writes the scenario as JSON lines; returns the number of lines.
    pub fn write(&self, out: &mut impl Write) -> io::Result<u64> {
        let mut rng = Rng(self.seed);
        let total_weight: u64 = ROUTES.iter().map(|r| r.weight).sum();
        let total_requests = u64::from(self.seconds) * u64::from(self.requests_per_sec);
        let isolated_every =
            (self.isolated_503s > 0).then(|| total_requests / u64::from(self.isolated_503s) + 1);
        let mut lines = 0u64;
        let mut request = 0u64;
        for sec in 0..self.seconds {
            for i in 0..self.requests_per_sec {
                request += 1;
                let t0 = self.start_ms
                    + i64::from(sec) * 1000
                    + i64::from(i) * 1000 / i64::from(self.requests_per_sec);
                let mut pick = rng.below(total_weight);
                let route = ROUTES
                    .iter()
                    .find(|r| {
                        let hit = pick < r.weight;
                        pick = pick.saturating_sub(r.weight);
                        hit
                    })
                    .expect("weights cover the range");
                let trace = format!("{:016x}{:016x}", rng.next(), rng.next());
                let spans: Vec<String> = route
                    .hops
                    .iter()
                    .map(|_| format!("{:016x}", rng.next()))
                    .collect();
                let depth = route.hops.len();
                let failing = (0..depth)
                    .rev()
                    .find(|&d| self.in_outage(route.hops[d], sec));
                let isolated =
                    isolated_every.is_some_and(|n| request % n == n / 2) && failing.is_none();
                for d in (0..depth).rev() {
                    let service = route.hops[d];
                    let ts = t0 + 2 + (depth - 1 - d) as i64 * 3 + rng.below(2) as i64;
                    let duration = 5 + rng.below(40) + (depth - 1 - d) as u64 * 10;
                    let (status, level, msg) = match failing {
                        Some(f) if d == f => (
                            503,
                            "error",
                            "upstream connect error: connection refused".to_string(),
                        ),
                        Some(f) if d < f => {
                            (503, "error", format!("{} returned 503", route.hops[d + 1]))
                        }
                        _ if (self.in_storm(service, sec) || isolated) && d == depth - 1 => {
                            (503, "warn", "overloaded: shedding request".to_string())
                        }
                        _ if d == depth - 2
                            && (isolated || self.in_storm(route.hops[depth - 1], sec)) =>
                        {
                            (
                                200,
                                "warn",
                                format!(
                                    "{} returned 503; served after retry",
                                    route.hops[depth - 1]
                                ),
                            )
                        }
                        _ => (
                            if route.method == "POST" { 201 } else { 200 },
                            "info",
                            "request completed".to_string(),
                        ),
                    };
                    let parent = if d == 0 {
                        String::new()
                    } else {
                        format!(",\"parent_span_id\":\"{}\"", spans[d - 1])
                    };
                    writeln!(
                        out,
                        "{{\"ts\":\"{}\",\"level\":\"{level}\",\"service\":\"{service}\",\"trace_id\":\"{trace}\",\"span_id\":\"{}\"{parent},\"method\":\"{}\",\"path\":\"{}\",\"status\":{status},\"duration_ms\":{duration},\"msg\":\"{} {} {status}: {msg}\"}}",
                        rfc3339(ts),
                        spans[d],
                        route.method,
                        route.path,
                        route.method,
                        route.path,
                    )?;
                    lines += 1;
                }
            }
            if sec % 5 == 0 {
                let (service, level, msg) = BACKGROUND[(sec / 5) as usize % BACKGROUND.len()];
                let ts = self.start_ms + i64::from(sec) * 1000 + 500;
                writeln!(out, "{{\"ts\":\"{}\",\"level\":\"{level}\",\"service\":\"{service}\",\"msg\":\"{msg}\"}}", rfc3339(ts))?;
                lines += 1;
            }
        }
        Ok(lines)
    }

    /// The scenario as one string.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        self.write(&mut buf).expect("writing to memory");
        String::from_utf8(buf).expect("generated text is UTF-8")
    }
}

/// 2026-03-14T10:00:00Z.
pub const EXAMPLE_START_MS: i64 = 1_773_482_400_000;

/// The bundled example: eight minutes of traffic, a two-minute payment outage that
/// cascades through checkout to the gateway, and a few isolated 503s.
pub fn example() -> Scenario {
    Scenario {
        start_ms: EXAMPLE_START_MS,
        seconds: 480,
        requests_per_sec: 2,
        outages: vec![Outage {
            root: "payment",
            from_s: 180,
            to_s: 300,
        }],
        storms: vec![],
        isolated_503s: 3,
        seed: 7,
    }
}

/// Twenty minutes of traffic: a payment outage (2–4 min) and an inventory outage
/// (10–12 min) that cascade, a search-only 503 storm (15–17 min) that does not, and
/// isolated 503s.
pub fn two_cascades() -> Scenario {
    Scenario {
        start_ms: EXAMPLE_START_MS,
        seconds: 1200,
        requests_per_sec: 5,
        outages: vec![
            Outage {
                root: "payment",
                from_s: 120,
                to_s: 240,
            },
            Outage {
                root: "inventory",
                from_s: 600,
                to_s: 720,
            },
        ],
        storms: vec![Storm {
            service: "search",
            from_s: 900,
            to_s: 1020,
        }],
        isolated_503s: 12,
        seed: 42,
    }
}
