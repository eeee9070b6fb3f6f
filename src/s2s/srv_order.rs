//! The order SRV targets are tried in (RFC 2782): lowest priority first, and within one
//! priority a weighted random choice, so that a domain's heavier servers take the larger
//! share of the links of all the servers on the network, not every link. The random
//! source is the caller's: tests give a seeded one, the resolver the system's.

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    /// The target host, as DNS gave it ("." for none).
    pub target: String,
    /// From `_xmpps-server._tcp`: TLS from the first byte.
    pub direct_tls: bool,
}

fn no_target(target: &str) -> bool {
    target == "." || target.is_empty()
}

/// The records to try, in order. `None`: the domain says it has no service (every
/// target is "."). `draw(n)` must return a number in `0..=n`, uniformly at random.
///
/// Within one priority, RFC 2782's selection: the records left are listed with those of
/// weight 0 first (so they keep a small chance), each with the running sum of the
/// weights; a number is drawn up to the sum, and the first record whose running sum
/// reaches it comes next. Before the draw, direct TLS (`_xmpps-server`) records go before
/// STARTTLS ones, which decides only between records of weight 0.
pub fn order(mut records: Vec<Srv>, draw: &mut impl FnMut(u32) -> u32) -> Option<Vec<Srv>> {
    if !records.is_empty() && records.iter().all(|r| no_target(&r.target)) {
        return None;
    }
    records.retain(|r| !no_target(&r.target));
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then((a.weight != 0).cmp(&(b.weight != 0)))
            .then(b.direct_tls.cmp(&a.direct_tls))
    });
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (group, next) = rest.split_at(same);
        out.extend(weighted(group.to_vec(), draw));
        rest = next;
    }
    Some(out)
}

/// One priority's records in RFC 2782's weighted random order; `group` lists those of
/// weight 0 first.
fn weighted(mut group: Vec<Srv>, draw: &mut impl FnMut(u32) -> u32) -> Vec<Srv> {
    let mut out = Vec::with_capacity(group.len());
    while !group.is_empty() {
        let sum: u32 = group.iter().map(|r| u32::from(r.weight)).sum();
        let pick = draw(sum).min(sum);
        let mut running = 0u32;
        let chosen = group
            .iter()
            .position(|r| {
                running += u32::from(r.weight);
                running >= pick
            })
            .unwrap_or(0);
        out.push(group.remove(chosen));
    }
    out
}

/// A uniform draw in `0..=n` from the system's random source. Without one (it never
/// fails on the systems we run on) the draw is 0: the lightest record first, still a
/// valid order.
pub fn system_draw(n: u32) -> u32 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return 0;
    }
    // A 64-bit value reduced to at most 65,535 × records: the bias is negligible.
    (u64::from_le_bytes(b) % (u64::from(n) + 1)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port: 5269,
            target: target.into(),
            direct_tls: false,
        }
    }

    fn hosts(records: &[Srv]) -> Vec<&str> {
        records.iter().map(|r| r.target.as_str()).collect()
    }

    /// splitmix64: a deterministic source for the tests.
    fn seeded(mut state: u64) -> impl FnMut(u32) -> u32 {
        move |n| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z % (u64::from(n) + 1)) as u32
        }
    }

    #[test]
    fn lower_priorities_always_come_first() {
        let mut draw = seeded(1);
        for _ in 0..100 {
            let got = order(
                vec![srv(20, 90, "backup."), srv(10, 1, "a."), srv(10, 5, "b.")],
                &mut draw,
            )
            .unwrap();
            assert_eq!(got[2].target, "backup.");
        }
    }

    #[test]
    fn the_draw_picks_the_first_record_whose_running_sum_reaches_it() {
        // Weights 0, 10, 30 listed in that order: running sums 0, 10, 40.
        let group = || {
            vec![
                srv(0, 10, "ten."),
                srv(0, 30, "thirty."),
                srv(0, 0, "zero."),
            ]
        };
        let first = |n: u32| {
            let mut draws = vec![n, 0, 0];
            let got = order(group(), &mut |_| draws.remove(0)).unwrap();
            got[0].target.clone()
        };
        assert_eq!(first(0), "zero.");
        assert_eq!(first(1), "ten.");
        assert_eq!(first(10), "ten.");
        assert_eq!(first(11), "thirty.");
        assert_eq!(first(40), "thirty.");
    }

    #[test]
    fn a_draw_past_the_sum_does_not_panic() {
        let got = order(vec![srv(0, 1, "a."), srv(0, 2, "b.")], &mut |_| u32::MAX).unwrap();
        assert_eq!(hosts(&got), ["b.", "a."]);
    }

    #[test]
    fn all_weights_zero_keeps_direct_tls_first_and_every_record() {
        let tls = Srv {
            direct_tls: true,
            ..srv(0, 0, "tls.")
        };
        let got = order(vec![srv(0, 0, "plain."), tls], &mut seeded(7)).unwrap();
        assert_eq!(hosts(&got), ["tls.", "plain."]);
    }

    #[test]
    fn weights_share_the_first_place_in_proportion() {
        let mut draw = seeded(2026);
        let mut counts = std::collections::BTreeMap::new();
        let draws = 10_000;
        for _ in 0..draws {
            let got = order(
                vec![
                    srv(5, 60, "sixty."),
                    srv(5, 30, "thirty."),
                    srv(5, 10, "ten."),
                ],
                &mut draw,
            )
            .unwrap();
            assert_eq!(got.len(), 3);
            *counts.entry(got[0].target.clone()).or_insert(0u32) += 1;
        }
        let share = |h: &str| counts.get(h).copied().unwrap_or(0);
        // Expected 6,000, 3,000 and 1,000 (with 1 in 101 draws going to the first of
        // the list on a draw of 0); generous bounds, the seed is fixed anyway.
        assert!((5_500..6_500).contains(&share("sixty.")), "{counts:?}");
        assert!((2_600..3_400).contains(&share("thirty.")), "{counts:?}");
        assert!((700..1_300).contains(&share("ten.")), "{counts:?}");
    }

    #[test]
    fn a_weight_0_record_is_rarely_first_but_never_lost() {
        let mut draw = seeded(9);
        let mut zero_first = 0;
        for _ in 0..1_000 {
            let got = order(vec![srv(0, 100, "heavy."), srv(0, 0, "zero.")], &mut draw).unwrap();
            assert_eq!(got.len(), 2);
            if got[0].target == "zero." {
                zero_first += 1;
            }
        }
        // Chosen first only on a draw of 0: about 1 in 101.
        assert!(zero_first < 40, "{zero_first}");
    }

    #[test]
    fn dot_targets_only_mean_no_service() {
        assert_eq!(order(vec![srv(0, 0, ".")], &mut seeded(0)), None);
        let got = order(vec![srv(0, 0, "."), srv(5, 0, "x.")], &mut seeded(0)).unwrap();
        assert_eq!(hosts(&got), ["x."]);
    }
}
