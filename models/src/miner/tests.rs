use super::encode::{chunks, QUOTED_MAX};
use super::*;

fn miner() -> Miner {
    Miner::new(MinerConfig::default())
}

#[test]
fn variables_become_wildcards_and_ids_stay() {
    let mut m = miner();
    let a = m.add("Received block blk_-562 of size 67108864 from /10.250.10.6:40524");
    let b = m.add("Received block blk_7128 of size 3 from /10.251.73.220:50010");
    assert_eq!(a, b);
    assert_eq!(
        m.template(a).unwrap(),
        "Received block <*> of size <*> from <*>"
    );
    let c = m.add("PacketResponder 1 for block blk_38 terminating");
    assert_ne!(a, c);
    let d = m.add("login from host=alpha.local ok");
    let e = m.add("login from host=beta.local ok");
    assert_eq!(d, e, "refined in place");
    assert_eq!(m.template(d).unwrap(), "login from <*> ok");
    assert_eq!(m.len(), 3);
}

#[test]
fn a_key_with_a_long_number_keeps_its_key() {
    let mut m = miner();
    let a = m.add("onExtend:1514038530000 14 0 4");
    let b = m.add("onExtend:1514038590000 15 0 4");
    assert_eq!(a, b);
    // Not `<*> <*>`: the longest match once took `onExtend:15140` as an endpoint.
    assert_eq!(m.template(a).unwrap(), "onExtend:<*> <*>");
    // A port is still an endpoint, all variable.
    let d = m.add("connect to wpad:80 failed");
    let e = m.add("connect to proxy:3128 failed");
    assert_eq!(d, e);
    assert_eq!(m.template(d).unwrap(), "connect to <*> failed");
}

#[test]
fn settled_words_stay_apart_until_many_siblings_prove_a_variable() {
    let mut m = miner();
    let started = m.add("VM Started (Lifecycle Event)");
    let paused = m.add("VM Paused (Lifecycle Event)");
    assert_ne!(
        started, paused,
        "a differing word does not generalise a template"
    );
    assert_eq!(m.add("VM Started (Lifecycle Event)"), started);
    let mut ids: Vec<_> = ["alice", "bob", "carol", "dave"]
        .iter()
        .map(|u| m.add(&format!("session opened for user {u}")))
        .collect();
    // The merge itself shows the place as a variable, before any later line differs.
    assert_eq!(m.template(ids[3]).unwrap(), "session opened for user <*>");
    ids.push(m.add("session opened for user erin"));
    let first = m.resolve(ids[0]);
    assert!(
        ids.iter().all(|id| m.resolve(*id) == first),
        "four siblings merge"
    );
    assert_eq!(m.template(ids[1]).unwrap(), "session opened for user <*>");
    assert_eq!(m.add("session opened for user zoe"), first);
    assert_leaves_mirror_clusters(&m);
    assert_eq!(m.template(started).unwrap(), "VM Started (Lifecycle Event)");
}

#[test]
fn key_value_words_are_settled_like_words() {
    let mut m = miner();
    let root = m.add("authentication failure; rhost=10.0.0.1 user=root");
    let guest = m.add("authentication failure; rhost=10.0.0.2 user=guest");
    assert_ne!(root, guest, "an enumeration-like value stays a constant");
    assert_eq!(
        m.add("authentication failure; rhost=10.0.0.3 user=root"),
        root
    );
    assert_eq!(
        m.template(root).unwrap(),
        "authentication failure; rhost=<*> user=root"
    );
    let ids: Vec<_> = ["a", "b", "c", "d"]
        .iter()
        .map(|u| m.add(&format!("login ok user={u}")))
        .collect();
    let first = m.resolve(ids[0]);
    assert!(
        ids.iter().all(|id| m.resolve(*id) == first),
        "many values prove a variable"
    );
}

#[test]
fn shapes_keep_their_constant_parts() {
    let mut m = miner();
    let id = m.add("session opened for user root by (uid=0)");
    assert_eq!(
        m.template(id).unwrap(),
        "session opened for user root by (uid=<*>)"
    );
}

#[test]
fn chunks_that_lex_alike_share_a_cached_shape_and_no_others_do() {
    let mut m = miner();
    let mut id = |chunk: &str| {
        let (start, text, class) = chunks(chunk).next().expect("one chunk");
        m.chunk_id(chunk.as_bytes(), start, text, class)
    };
    assert_eq!(id("blk_-562"), id("blk_-7128"), "digits do not matter");
    let cached = id("uid=42,");
    assert_eq!(id("uid=7,"), cached);
    // Constant parts with digits are not shared: a dotted class name keeps them.
    assert_ne!(id("org.apache.hadoop2.Foo"), id("org.apache.hadoop3.Foo"));
    // A leading `0x` is hex, a variable; any other digit there is a called function.
    assert_eq!(id("0x1f("), VAR);
    assert_ne!(id("5x1f("), VAR);
}

#[test]
fn odd_messages_do_not_break_it() {
    let mut m = miner();
    let empty = m.add("");
    assert_eq!(m.add("   "), empty);
    assert_eq!(m.template(empty).unwrap(), "");
    m.add("x");
    let words = ["alpha", "bravo", "charlie"];
    let long: String = (0..100_000).map(|i| format!("{} ", words[i % 3])).collect();
    let id = m.add(&long);
    assert_eq!(m.template(id).unwrap().split(' ').count(), 257);
    assert_eq!(m.stats.truncated, 1);
    m.add("\u{0}\u{1}\u{fffd}\u{fffd} binary ÿÿ junk");
}

#[test]
fn lines_of_a_seen_form_join_directly_if_their_own_digits_agree() {
    let mut m = miner();
    let took = m.add("took 15 ms on node-3");
    assert_eq!(m.add("took 72 ms on node-9"), took);
    assert_eq!(m.stats.repeated, 1, "the same form but for digits");
    assert_eq!(m.add("took 720 ms on node-9"), took);
    assert_eq!(m.stats.repeated, 1, "another length is another form");
    // `hadoop2` and `hadoop3` are constants of their own: the second line is not a
    // repeat of the first, and generalises the template; the third repeats it.
    let first = m.add("org.apache.hadoop2.Foo started");
    let second = m.add("org.apache.hadoop3.Foo started");
    assert_eq!(m.stats.repeated, 1);
    assert_eq!(first, second);
    assert_eq!(m.template(first).unwrap(), "<*> started");
    assert_eq!(m.add("org.apache.hadoop3.Foo started"), first);
    assert_eq!(m.stats.repeated, 2);
}

#[test]
fn a_reused_slot_is_not_mistaken_for_the_evicted_template() {
    let mut m = Miner::new(MinerConfig {
        max_templates: 1,
        ..MinerConfig::default()
    });
    let full = m.add("disk full on node");
    // Routed elsewhere; at the cap of one it evicts `full` and takes its slot with
    // a template the first line would fit (`disk <*> on node`).
    let numbered = m.add("disk 42 on node");
    assert!(!m.is_live(full));
    let again = m.add("disk full on node");
    assert_ne!(
        again, numbered,
        "the cached slot now holds another template"
    );
    assert_eq!(m.template(again).unwrap(), "disk full on node");
}

#[test]
fn words_past_a_full_shape_table_stay_wildcards_every_time() {
    let mut m = Miner::new(MinerConfig {
        max_chunks: 4,
        ..MinerConfig::default()
    });
    for _ in 0..3 {
        let id = m.add("alpha bravo charlie delta echo");
        assert_eq!(m.template(id).unwrap(), "alpha bravo <*>");
    }
    assert_eq!(m.stats.chunks_over_cap, 9, "counted on every line");
}

#[test]
fn eviction_while_opening_a_sibling_does_not_lose_its_template() {
    // Lines that differ by one settled word open siblings; at the template cap,
    // making room for the new sibling may evict the template it is a sibling of.
    let mut m = Miner::new(MinerConfig {
        max_templates: 20,
        ..MinerConfig::default()
    });
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    let mut state = 1u32;
    for _ in 0..20_000 {
        let line: Vec<_> = (0..5)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                words[(state >> 16) as usize % words.len()]
            })
            .collect();
        let id = m.add(&line.join(" "));
        assert!(m.is_live(id), "the line's template is live");
    }
    assert!(m.len() <= 20);
    assert!(m.stats.templates_evicted > 0);
    // What only evicted templates had is forgotten: memory stays bounded.
    assert!(
        m.siblings.len() <= 20 * 5,
        "{} sibling groups",
        m.siblings.len()
    );
    assert!(m.aliases.len() <= 20 * 5, "{} aliases", m.aliases.len());
    assert_leaves_mirror_clusters(&m);
}

/// Every live template is in its leaf once, with its current tokens, and nothing else is.
fn assert_leaves_mirror_clusters(m: &Miner) {
    let mut seen = 0;
    for (key, leaf) in &m.leaves {
        for (slot, tokens) in leaf.rows() {
            let c = m.clusters[slot as usize].as_ref().expect("live");
            assert_eq!((c.leaf, c.tokens.as_slice()), (*key, tokens));
            seen += 1;
        }
    }
    assert_eq!(seen, m.len());
}

#[test]
fn a_leaf_holds_at_most_its_cap() {
    // Random words overflow both routing levels: every line lands in one leaf.
    let mut m = Miner::new(MinerConfig {
        max_children: 4,
        max_leaf_templates: 64,
        ..MinerConfig::default()
    });
    let mut x = 7u64;
    let mut word = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..6)
            .map(|i| char::from(b'a' + ((x >> (i * 5 + 20)) % 26) as u8))
            .collect::<String>()
    };
    for _ in 0..2_000 {
        let msg = (0..5).map(|_| word()).collect::<Vec<_>>().join(" ");
        m.add(&msg);
    }
    assert!(m.leaves.values().all(|l| l.slots.len() <= 64));
    assert!(m.stats.templates_evicted > 0);
    assert_eq!(m.clusters.iter().flatten().count(), m.len());
    assert_leaves_mirror_clusters(&m);
}

#[test]
fn a_flood_of_unique_messages_stays_bounded() {
    let mut m = Miner::new(MinerConfig {
        max_templates: 1000,
        max_chunks: 5000,
        ..MinerConfig::default()
    });
    let words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"];
    for i in 0..50_000u32 {
        let msg: String = (0..6)
            .map(|j| {
                format!(
                    "{}{} ",
                    words[((i >> (j * 2)) % 6) as usize],
                    char::from(b'a' + ((i * 7 + j) % 26) as u8)
                )
            })
            .collect();
        m.add(&msg);
    }
    assert!(m.len() <= 1000);
    assert!(m.shapes.len() <= 5000);
    assert!(m.stats.templates_evicted > 0 || m.stats.chunks_over_cap > 0);
    let live = m.clusters.iter().flatten().count();
    assert_eq!(live, m.len());
    assert_leaves_mirror_clusters(&m);
}

#[test]
fn lines_that_agree_only_on_variables_stay_apart() {
    let mut m = miner();
    let a = m.add("onExtend:1514038530000 14 0 4");
    let b = m.add("getDiffTotalSteps= 12##7007");
    assert_ne!(a, b);
    assert_eq!(m.add("onExtend:1514038531000 1 0 4"), a);
    assert_eq!(m.template(a).unwrap(), "onExtend:<*> <*>");
}

#[test]
fn dotted_constants_and_key_values_name_events() {
    let mut m = miner();
    let on = m.add("processHandleBroadcastAction action:android.intent.action.SCREEN_ON");
    let tick = m.add("processHandleBroadcastAction action:android.intent.action.TIME_TICK");
    assert_ne!(on, tick, "an upper-case constant is a word");
    let off = m.add("onReceive action: android.intent.action.SCREEN_OFF");
    assert_ne!(
        m.add("onReceive action: android.intent.action.SCREEN_ON"),
        off
    );
    // A dotted name that is not a constant is still a variable.
    let a = m.add("loaded bundle com.apple.alpha in place");
    assert_eq!(m.add("loaded bundle com.apple.beta in place"), a);
}

#[test]
fn a_quoted_value_with_spaces_is_one_chunk() {
    let mut m = miner();
    let a = m.add(r#"acquire lock=1, flags=0x1, tag="View Lock", name=x, uid=2"#);
    let b = m.add(r#"acquire lock=3, flags=0x1, tag="*launch*", name=x, uid=4"#);
    assert_eq!(a, b);
    assert_eq!(
        m.template(a).unwrap(),
        "acquire lock=<*>, flags=<*>, <*> name=x, uid=<*>"
    );
    // An unclosed quote does not swallow the line.
    let c = m.add(r#"bad tag="open and never closed here"#);
    assert_eq!(
        m.template(c).unwrap(),
        r#"bad tag="open and never closed here"#
    );
    let texts = |line: &'static str| chunks(line).map(|(_, t, _)| t).collect::<Vec<_>>();
    assert_eq!(
        texts(r#"a="x y" b="z w "c" d"#),
        [r#"a="x y""#, r#"b="z w "c""#, "d"]
    );
    assert_eq!(
        texts(r#"say "x y" a= "b c""#),
        ["say", r#""x"#, r#"y""#, "a=", r#""b"#, r#"c""#]
    );
    let long = format!(r#"a="{}""#, "w ".repeat(QUOTED_MAX));
    assert_eq!(
        chunks(&long).count(),
        QUOTED_MAX + 1,
        "a long quote is text"
    );
}

#[test]
fn a_path_with_a_space_in_it_is_one_chunk() {
    let texts = |line: &'static str| chunks(line).map(|(_, t, _)| t).collect::<Vec<_>>();
    assert_eq!(
        texts("RRD_update (/var/lib/rrds/D Nodes/dn731/pkts_out.rrd): illegal"),
        [
            "RRD_update",
            "(/var/lib/rrds/D Nodes/dn731/pkts_out.rrd):",
            "illegal"
        ]
    );
    // Two spaces in it, each before a segment: still one.
    assert_eq!(
        texts("open /Users/a/Application Support/My Files/x.db now"),
        ["open", "/Users/a/Application Support/My Files/x.db", "now"]
    );
    // What follows is not a path's segment: a protocol's version, a word, a new path.
    assert_eq!(
        texts("GET /a/b HTTP/1.1 200"),
        ["GET", "/a/b", "HTTP/1.1", "200"]
    );
    assert_eq!(texts("read /a/b and c"), ["read", "/a/b", "and", "c"]);
    assert_eq!(texts("cp /a/b /c/d"), ["cp", "/a/b", "/c/d"]);
    // One slash is no path to go on: `and/or` after a word stays apart.
    assert_eq!(texts("x/y and/or z"), ["x/y", "and/or", "z"]);
    let mut m = miner();
    let a = m.add("RRD_update (/var/lib/rrds/D Nodes/dn731/pkts_out.rrd): illegal attempt");
    let b = m.add("RRD_update (/var/lib/rrds/__SummaryInfo__/cpu_idle.rrd): illegal attempt");
    assert_eq!(a, b, "paths with and without a space are one variable");
}
