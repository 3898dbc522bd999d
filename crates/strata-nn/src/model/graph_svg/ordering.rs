//! The order of the boxes within each rank: barycentre sweeps, keeping the
//! order with the fewest edge crossings.

/// Crossings between the segments joining rank `r` to rank `r + 1`.
pub(super) fn crossings(
    ranks: &[Vec<usize>],
    down: &[Vec<usize>],
    pos: &[usize],
    r: usize,
) -> usize {
    let mut segs: Vec<(usize, usize)> = ranks[r]
        .iter()
        .flat_map(|&a| down[a].iter().map(move |&b| (pos[a], pos[b])))
        .collect();
    segs.sort_unstable();
    let mut n = 0;
    for (i, &(a1, b1)) in segs.iter().enumerate() {
        for &(a2, b2) in &segs[i + 1..] {
            if a2 > a1 && b2 < b1 {
                n += 1;
            }
        }
    }
    n
}

pub(super) fn total_crossings(ranks: &[Vec<usize>], down: &[Vec<usize>], pos: &[usize]) -> usize {
    (0..ranks.len().saturating_sub(1))
        .map(|r| crossings(ranks, down, pos, r))
        .sum()
}

pub(super) fn positions(ranks: &[Vec<usize>], n: usize) -> Vec<usize> {
    let mut pos = vec![0; n];
    for rank in ranks {
        for (i, &v) in rank.iter().enumerate() {
            pos[v] = i;
        }
    }
    pos
}

/// Orders each rank to reduce crossings: barycenter sweeps down and up,
/// keeping the best order seen (ties keep the current order, so a graph
/// already drawn without crossings stays as built).
pub(super) fn order_ranks(
    ranks: &mut [Vec<usize>],
    up: &[Vec<usize>],
    down: &[Vec<usize>],
    n: usize,
) {
    let mut pos = positions(ranks, n);
    let mut best = ranks.to_vec();
    let mut best_crossings = total_crossings(ranks, down, &pos);
    for sweep in 0..12 {
        if best_crossings == 0 {
            break;
        }
        let downward = sweep % 2 == 0;
        let order: Vec<usize> = if downward {
            (1..ranks.len()).collect()
        } else {
            (0..ranks.len().saturating_sub(1)).rev().collect()
        };
        for r in order {
            let nbrs = if downward { up } else { down };
            let mut keyed: Vec<(f64, usize)> = ranks[r]
                .iter()
                .map(|&v| {
                    let k = if nbrs[v].is_empty() {
                        pos[v] as f64
                    } else {
                        nbrs[v].iter().map(|&u| pos[u] as f64).sum::<f64>() / nbrs[v].len() as f64
                    };
                    (k, v)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
            ranks[r] = keyed.into_iter().map(|(_, v)| v).collect();
            for (i, &v) in ranks[r].iter().enumerate() {
                pos[v] = i;
            }
        }
        let c = total_crossings(ranks, down, &pos);
        if c < best_crossings {
            best_crossings = c;
            best = ranks.to_vec();
        }
    }
    ranks.clone_from_slice(&best);
}
