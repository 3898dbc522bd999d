//! x positions: each sweep places a rank's boxes, in their order, as close
//! to their neighbours as the spacing allows (an isotonic regression).

use super::*;

/// Weighted isotonic regression with gaps: the x centres, in this order and
/// at least `gaps[i]` apart, that minimise `Σ w (x - want)²` (pool adjacent
/// violators on `x - offset`).
pub(super) fn place_in_order(want: &[f64], weight: &[f64], gaps: &[f64]) -> Vec<f64> {
    let mut offset = vec![0.0; want.len()];
    for i in 1..want.len() {
        offset[i] = offset[i - 1] + gaps[i - 1];
    }
    // blocks: (sum of weights, weighted sum of targets, count)
    let mut blocks: Vec<(f64, f64, usize)> = Vec::new();
    for i in 0..want.len() {
        blocks.push((weight[i], weight[i] * (want[i] - offset[i]), 1));
        while blocks.len() > 1 {
            let (w1, s1, _) = blocks[blocks.len() - 1];
            let (w0, s0, _) = blocks[blocks.len() - 2];
            if s0 / w0 <= s1 / w1 {
                break;
            }
            let (w, s, c) = blocks.pop().unwrap_or((w1, s1, 1));
            if let Some(last) = blocks.last_mut() {
                last.0 += w;
                last.1 += s;
                last.2 += c;
            }
        }
    }
    let mut x = Vec::with_capacity(want.len());
    for (w, s, c) in blocks {
        for _ in 0..c {
            x.push(s / w + offset[x.len()]);
        }
    }
    x
}

/// X centres: each rank packed in its order, then sweeps pull every vertex
/// toward the weighted mean of its neighbours on the rank before it.
pub(super) fn place_x(
    vertices: &mut [Vertex],
    ranks: &[Vec<usize>],
    up: &[Vec<usize>],
    down: &[Vec<usize>],
) {
    let gap = |a: &Vertex, b: &Vertex| {
        (a.width + b.width) / 2.0 + if a.dummy && b.dummy { GAP / 2.0 } else { GAP }
    };
    for rank in ranks {
        let mut x = 0.0;
        for (i, &v) in rank.iter().enumerate() {
            if i > 0 {
                x += gap(&vertices[rank[i - 1]], &vertices[v]);
            }
            vertices[v].x = x;
        }
        let shift = x / 2.0;
        for &v in rank {
            vertices[v].x -= shift;
        }
    }
    for sweep in 0..24 {
        let downward = sweep % 2 == 0;
        let order: Vec<usize> = if downward {
            (1..ranks.len()).collect()
        } else {
            (0..ranks.len().saturating_sub(1)).rev().collect()
        };
        let nbrs = if downward { up } else { down };
        for r in order {
            let rank = &ranks[r];
            let want: Vec<f64> = rank
                .iter()
                .map(|&v| {
                    let (mut s, mut w) = (0.0, 0.0);
                    for &u in &nbrs[v] {
                        let k = vertices[u].weight;
                        s += k * vertices[u].x;
                        w += k;
                    }
                    if w > 0.0 {
                        s / w
                    } else {
                        vertices[v].x
                    }
                })
                .collect();
            let weight: Vec<f64> = rank.iter().map(|&v| vertices[v].weight).collect();
            let gaps: Vec<f64> = rank
                .windows(2)
                .map(|p| gap(&vertices[p[0]], &vertices[p[1]]))
                .collect();
            let xs = place_in_order(&want, &weight, &gaps);
            for (&v, x) in rank.iter().zip(xs) {
                vertices[v].x = x;
            }
        }
    }
}
