//! Ranks: each box's row, its longest path from the inputs, and how hard it
//! pulls on its neighbours' positions.

use super::*;

/// For each box, the number of edges on the longest input-to-output path
/// through it.
pub(super) fn longest_through(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    // vertex ids are topological (inputs, then nodes in order): one pass
    // forwards gives each box's longest path above it, one backwards below
    let mut above = vec![0usize; n];
    let mut below = vec![0usize; n];
    let mut sorted = edges.to_vec();
    sorted.sort_unstable_by_key(|&(_, b)| b);
    for &(a, b) in &sorted {
        above[b] = above[b].max(above[a] + 1);
    }
    sorted.sort_unstable_by_key(|&(a, _)| std::cmp::Reverse(a));
    for &(a, b) in &sorted {
        below[a] = below[a].max(below[b] + 1);
    }
    (0..n).map(|v| above[v] + below[v]).collect()
}

/// Ranks: a node's longest path from the inputs. What hangs off a side
/// input (one not on a longest path of the graph: a second input joining
/// deep in the graph, and the layers fed only by it) sits just above where
/// it joins instead of at the top.
pub(super) fn assign_ranks(
    vertices: &mut [Vertex],
    edges: &[(usize, usize)],
    n_in: usize,
    through: &[usize],
) {
    let n = vertices.len();
    let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut succs: Vec<Vec<usize>> = vec![Vec::new(); n];
    for &(a, b) in edges {
        preds[b].push(a);
        succs[a].push(b);
    }
    for v in n_in..n {
        vertices[v].rank = preds[v]
            .iter()
            .map(|&p| vertices[p].rank + 1)
            .max()
            .unwrap_or(0);
    }
    let longest = through.iter().copied().max().unwrap_or(0);
    let mut main = vec![false; n];
    for v in 0..n {
        main[v] = if v < n_in {
            through[v] == longest
        } else {
            preds[v].iter().any(|&p| main[p])
        };
    }
    for v in (0..n).rev() {
        if !main[v] {
            if let Some(r) = succs[v].iter().map(|&c| vertices[c].rank).min() {
                vertices[v].rank = r.saturating_sub(1).max(vertices[v].rank);
            }
        }
    }
}

/// Box weights: 1 on a longest path of the graph (counted in boxes), less
/// for a box whose longest path through it holds fewer boxes.
pub(super) fn assign_weights(vertices: &mut [Vertex], through: &[usize]) {
    let longest = through.iter().copied().max().unwrap_or(0);
    for (v, &t) in vertices.iter_mut().zip(through) {
        let short = (longest - t).min(64) as i32;
        v.weight = SHORT_PATH_FACTOR.powi(short).max(MIN_BOX_WEIGHT);
    }
}
