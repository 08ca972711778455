//! Field mapping: which keys of a structured record hold the time, service, level, status,
//! trace id, span ids and message. Keys are dotted paths, so `service.name` matches both
//! `{"service.name": ..}` and `{"service": {"name": ..}}`.

use rustc_hash::FxHashMap;
use serde::Deserialize;

/// The fields logheal extracts from every record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Ts,
    Level,
    Service,
    Status,
    TraceId,
    SpanId,
    ParentSpanId,
    Message,
    /// A request id (`x-request-id`): the correlation key of records without a trace id.
    RequestId,
    /// A gRPC status (name or number): UNAVAILABLE counts as HTTP 503.
    Grpc,
    /// A container name: the service when nothing better names it (not a sidecar's).
    Container,
    /// A pod name: the service, without its ReplicaSet and pod hashes, as a last resort.
    Pod,
    /// The service called (a proxy's upstream cluster or authority).
    Callee,
    /// An extra field a rule matches on, by index into [`FieldNames::extra`].
    Extra(u16),
}

impl Field {
    /// This field's position in [`Field::LISTED`] (`None` for extra fields).
    #[inline]
    pub const fn slot(self) -> Option<usize> {
        Some(match self {
            Field::Ts => 0,
            Field::Level => 1,
            Field::Service => 2,
            Field::Status => 3,
            Field::TraceId => 4,
            Field::SpanId => 5,
            Field::ParentSpanId => 6,
            Field::Message => 7,
            Field::RequestId => 8,
            Field::Grpc => 9,
            Field::Container => 10,
            Field::Pod => 11,
            Field::Callee => 12,
            Field::Extra(_) => return None,
        })
    }

    /// The fields with candidate lists in [`FieldNames`], in its order.
    pub const LISTED: [Field; 13] = [
        Field::Ts,
        Field::Level,
        Field::Service,
        Field::Status,
        Field::TraceId,
        Field::SpanId,
        Field::ParentSpanId,
        Field::Message,
        Field::RequestId,
        Field::Grpc,
        Field::Container,
        Field::Pod,
        Field::Callee,
    ];
}

/// Candidate key paths per field, in order of preference. The defaults cover the flat
/// convention, Elastic Common Schema and the OpenTelemetry log data model; names given in
/// configuration are tried before them.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FieldNames {
    pub ts: Vec<String>,
    pub level: Vec<String>,
    pub service: Vec<String>,
    pub status: Vec<String>,
    pub trace_id: Vec<String>,
    pub span_id: Vec<String>,
    pub parent_span_id: Vec<String>,
    pub message: Vec<String>,
    pub request_id: Vec<String>,
    pub grpc: Vec<String>,
    pub container: Vec<String>,
    pub pod: Vec<String>,
    pub callee: Vec<String>,
    /// Further keys to capture for rules that match on them (`select.fields`).
    #[serde(skip)]
    pub extra: Vec<String>,
}

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

impl Default for FieldNames {
    /// The candidates of `REAL-LOGS.md` §10: application conventions first, then the
    /// envelopes of Fluent Bit (`log`, `kubernetes.labels.*`), Vector (`message`,
    /// `kubernetes.pod_labels.*`), Filebeat (ECS, de-dotted labels), Envoy/Istio JSON and
    /// ingress-nginx JSON.
    fn default() -> Self {
        FieldNames {
            ts: strings(&[
                "ts",
                "time",
                "timestamp",
                "@timestamp",
                "@t",
                "time_unix_nano",
                "timeUnixNano",
                "start_time",
                "asctime",
                "Timestamp",
                "time_iso8601",
                "time_local",
                "__REALTIME_TIMESTAMP",
            ]),
            level: strings(&[
                "level",
                "log.level",
                "severity_text",
                "severityText",
                "severity",
                "levelname",
                "@l",
                "LogLevel",
                "lvl",
                "severity_number",
                "severityNumber",
                "PRIORITY",
            ]),
            service: strings(&[
                "service",
                "service.name",
                "resource.service.name",
                "resource.attributes.service.name",
                "resources.service.name",
                "otelServiceName",
                "dd.service",
                "serviceContext.service",
                "kubernetes.labels.app.kubernetes.io/name",
                "kubernetes.labels.app",
                "kubernetes.labels.service.istio.io/canonical-name",
                "kubernetes.labels.k8s-app",
                "kubernetes.pod_labels.app.kubernetes.io/name",
                "kubernetes.pod_labels.app",
                "kubernetes.pod_labels.service.istio.io/canonical-name",
                "kubernetes.pod_labels.k8s-app",
                "kubernetes.labels.app_kubernetes_io/name",
                "kubernetes.labels.service_istio_io/canonical-name",
                "kubernetes.deployment.name",
                "k8s.deployment.name",
                "SYSLOG_IDENTIFIER",
            ]),
            status: strings(&[
                "status",
                "status_code",
                "statusCode",
                "http.response.status_code",
                "http.status_code",
                "attributes.http.response.status_code",
                "attributes.http.status_code",
                "response_code",
                "res.statusCode",
                "httpRequest.status",
            ]),
            trace_id: strings(&[
                "trace_id",
                "trace.id",
                "traceId",
                "traceID",
                "otelTraceID",
                "dd.trace_id",
                "@tr",
                "traceparent",
                "traceParent",
                "httpRequest.traceParent",
                "x-b3-traceid",
                "X-B3-TraceId",
                "b3",
                "logging.googleapis.com/trace",
            ]),
            span_id: strings(&[
                "span_id",
                "span.id",
                "spanId",
                "spanID",
                "otelSpanID",
                "dd.span_id",
                "@sp",
                "logging.googleapis.com/spanId",
            ]),
            parent_span_id: strings(&["parent_span_id", "parent.id", "parentSpanId", "parent_id"]),
            message: strings(&[
                "msg",
                "message",
                "event",
                "@m",
                "@mt",
                "short_message",
                "Message",
                "body",
                "body.stringValue",
                "log",
                "MESSAGE",
            ]),
            request_id: strings(&[
                "request_id",
                "x_request_id",
                "x-request-id",
                "requestID",
                "requestId",
                "req_id",
                "request.id",
            ]),
            grpc: strings(&[
                "grpc.code",
                "rpc.grpc.status_code",
                "attributes.rpc.grpc.status_code",
                "grpc_status",
                "grpc.status_code",
            ]),
            container: strings(&[
                "kubernetes.container_name",
                "kubernetes.container.name",
                "k8s.container.name",
            ]),
            pod: strings(&["kubernetes.pod_name", "kubernetes.pod.name", "k8s.pod.name"]),
            callee: strings(&[
                "upstream_cluster",
                "upstreamCluster",
                "authority",
                "upstream_host_name",
            ]),
            extra: Vec::new(),
        }
    }
}

impl FieldNames {
    /// These names with `custom` tried first for every field that `custom` names.
    pub fn with_overrides(custom: &FieldNames) -> FieldNames {
        let mut out = FieldNames::default();
        for (mine, theirs) in out.lists_mut().into_iter().zip(custom.lists()) {
            let mut merged = theirs.clone();
            merged.extend(mine.drain(..).filter(|n| !theirs.contains(n)));
            *mine = merged;
        }
        out.extra = custom.extra.clone();
        out
    }

    /// The candidates of every field, in [`Field::LISTED`] order.
    pub fn lists(&self) -> [&Vec<String>; 13] {
        [
            &self.ts,
            &self.level,
            &self.service,
            &self.status,
            &self.trace_id,
            &self.span_id,
            &self.parent_span_id,
            &self.message,
            &self.request_id,
            &self.grpc,
            &self.container,
            &self.pod,
            &self.callee,
        ]
    }

    fn lists_mut(&mut self) -> [&mut Vec<String>; 13] {
        [
            &mut self.ts,
            &mut self.level,
            &mut self.service,
            &mut self.status,
            &mut self.trace_id,
            &mut self.span_id,
            &mut self.parent_span_id,
            &mut self.message,
            &mut self.request_id,
            &mut self.grpc,
            &mut self.container,
            &mut self.pod,
            &mut self.callee,
        ]
    }

    /// Index of an extra field, adding it if new (rules call this while compiling).
    pub fn extra_index(&mut self, path: &str) -> u16 {
        let pos = self
            .extra
            .iter()
            .position(|p| p == path)
            .unwrap_or_else(|| {
                self.extra.push(path.to_string());
                self.extra.len() - 1
            });
        u16::try_from(pos).expect("fewer than 65536 extra fields")
    }
}

/// What a dotted path means: a field (with its preference rank, lower wins) and/or the
/// prefix of a longer candidate path (so the parser descends into it).
#[derive(Debug, Clone, Copy, Default)]
pub struct PathEntry {
    pub field: Option<(Field, u8)>,
    pub is_prefix: bool,
}

/// The longest length a path's shape tells apart; longer paths share its shape.
const SHAPE_LEN: usize = 64;

/// [`FieldNames`] compiled for lookups by key: the paths are grouped by shape (first
/// byte and length), so a key is compared only with the few paths of its own shape,
/// and a key of a shape no path has is no key at once. No hashing: a hash lookup per
/// key was 15 % of a flat-JSON replay (`perf`), and most keys of a record are not
/// candidates.
#[derive(Debug, Clone)]
pub struct FieldIndex {
    /// All paths with their meaning, sorted by shape.
    paths: Box<[(Box<str>, PathEntry)]>,
    /// Per shape (`first byte * SHAPE_LEN + length`), its range in `paths`.
    shapes: Box<[(u16, u16)]>,
}

fn shape(path: &[u8]) -> Option<usize> {
    let first = *path.first()?;
    Some(usize::from(first) * SHAPE_LEN + path.len().min(SHAPE_LEN - 1))
}

impl FieldIndex {
    pub fn new(names: &FieldNames) -> Self {
        let fields = Field::LISTED;
        let mut paths: FxHashMap<Box<str>, PathEntry> = FxHashMap::default();
        let named = fields.iter().zip(names.lists()).flat_map(|(f, list)| {
            list.iter()
                .enumerate()
                .map(move |(rank, p)| (*f, rank, p.as_str()))
        });
        let extra = names
            .extra
            .iter()
            .enumerate()
            .map(|(i, p)| (Field::Extra(i as u16), 0, p.as_str()));
        for (field, rank, path) in named.chain(extra) {
            let rank = u8::try_from(rank).unwrap_or(u8::MAX);
            let entry = paths.entry(path.into()).or_default();
            if entry.field.is_none_or(|(_, r)| rank < r) {
                entry.field = Some((field, rank));
            }
            for (i, _) in path.match_indices('.') {
                paths.entry(path[..i].into()).or_default().is_prefix = true;
            }
        }
        let mut paths: Vec<(Box<str>, PathEntry)> =
            paths.into_iter().filter(|(p, _)| !p.is_empty()).collect();
        paths
            .sort_by(|(a, _), (b, _)| shape(a.as_bytes()).cmp(&shape(b.as_bytes())).then(a.cmp(b)));
        paths.truncate(usize::from(u16::MAX));
        let mut shapes = vec![(0u16, 0u16); 256 * SHAPE_LEN].into_boxed_slice();
        for (i, (path, _)) in paths.iter().enumerate() {
            let range = &mut shapes[shape(path.as_bytes()).expect("not empty")];
            if range.0 == range.1 {
                range.0 = i as u16;
            }
            range.1 = i as u16 + 1;
        }
        FieldIndex {
            paths: paths.into_boxed_slice(),
            shapes,
        }
    }

    /// The paths of `key`'s shape (none: `lookup` is `None`).
    #[inline]
    fn candidates(&self, key: &str) -> &[(Box<str>, PathEntry)] {
        let Some(&(lo, hi)) = shape(key.as_bytes()).map(|s| &self.shapes[s]) else {
            return &[];
        };
        &self.paths[usize::from(lo)..usize::from(hi)]
    }

    /// `false` when no path has `key`'s first byte and length (then `lookup` is `None`).
    #[inline]
    pub fn may_be_key(&self, key: &str) -> bool {
        !self.candidates(key).is_empty()
    }

    /// What `path` (a dotted key path) means, if anything.
    #[inline]
    pub fn lookup(&self, path: &str) -> Option<PathEntry> {
        self.candidates(path)
            .iter()
            .find(|(p, _)| same(p.as_bytes(), path.as_bytes()))
            .map(|(_, entry)| *entry)
    }
}

/// `a == b`, for the short strings keys are, without a call to `memcmp` (which was 8 %
/// of a flat-JSON replay): two overlapping words compare up to 16 bytes.
#[inline]
pub(crate) fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        // Byte by byte: `==` on slices calls `memcmp` however short they are.
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_keys_compare_equal_exactly_when_they_are() {
        let keys = [
            "",
            "a",
            "ab",
            "abc",
            "abcd",
            "abcdefg",
            "abcdefgh",
            "abcdefghijklmnop",
        ];
        for k in keys {
            for (i, b) in k.bytes().enumerate().chain([(k.len(), b'x')]) {
                let mut other = k.as_bytes().to_vec();
                if i < other.len() {
                    other[i] = b ^ 1;
                } else {
                    other.push(b);
                }
                assert!(!same(k.as_bytes(), &other), "{k:?} against {other:?}");
            }
            assert!(same(k.as_bytes(), k.to_string().as_bytes()), "{k:?}");
        }
        let long = "kubernetes.labels.app.kubernetes.io/name";
        assert!(same(long.as_bytes(), long.to_string().as_bytes()));
        assert!(!same(long.as_bytes(), long.replace("io", "iO").as_bytes()));
    }

    #[test]
    fn slots_are_positions_in_the_listed_order() {
        for (i, f) in Field::LISTED.iter().enumerate() {
            assert_eq!(f.slot(), Some(i), "{f:?}");
        }
        assert_eq!(Field::Extra(3).slot(), None);
        assert_eq!(
            FieldNames::default().lists().len(),
            Field::LISTED.len(),
            "one candidate list per field"
        );
    }

    #[test]
    fn prefixes_and_ranks() {
        let idx = FieldIndex::new(&FieldNames::default());
        assert!(idx.lookup("resource").unwrap().is_prefix);
        assert!(idx.lookup("resource.attributes").unwrap().is_prefix);
        assert_eq!(idx.lookup("ts").unwrap().field, Some((Field::Ts, 0)));
        assert_eq!(
            idx.lookup("@timestamp").unwrap().field,
            Some((Field::Ts, 3))
        );
        let service = idx.lookup("service").unwrap();
        assert!(service.is_prefix && service.field == Some((Field::Service, 0)));
        assert!(idx.lookup("user.id").is_none());
    }

    #[test]
    fn overrides_come_first() {
        let custom = FieldNames {
            service: vec!["app".into(), "service".into()],
            ..FieldNames {
                ts: vec![],
                level: vec![],
                service: vec![],
                status: vec![],
                trace_id: vec![],
                span_id: vec![],
                parent_span_id: vec![],
                message: vec![],
                request_id: vec![],
                grpc: vec![],
                container: vec![],
                pod: vec![],
                callee: vec![],
                extra: vec![],
            }
        };
        let merged = FieldNames::with_overrides(&custom);
        assert_eq!(&merged.service[..3], &["app", "service", "service.name"]);
        assert_eq!(merged.ts, FieldNames::default().ts);
    }
}
