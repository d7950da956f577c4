//! The task graph: cycle detection that prints the whole cycle, and layering for
//! display. Edges point from a task to the tasks it depends on.

use std::collections::{BTreeMap, VecDeque};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// Finds every dependency cycle. Each is returned as a path of indices into the
/// task list that starts and ends at the same task (`a -> b -> a`), starting at
/// the task that comes first in the file. Self-dependencies are not reported here.
pub(crate) fn cycles(task_count: usize, edges: &[(usize, usize)]) -> Vec<Vec<usize>> {
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(task_count, edges.len());
    let nodes: Vec<NodeIndex> = (0..task_count).map(|i| graph.add_node(i)).collect();
    for &(from, to) in edges {
        if from != to {
            graph.add_edge(nodes[from], nodes[to], ());
        }
    }
    let mut out = Vec::new();
    for component in tarjan_scc(&graph) {
        if component.len() < 2 {
            continue;
        }
        let members: std::collections::HashSet<NodeIndex> = component.iter().copied().collect();
        let Some(&start) = component.iter().min_by_key(|n| graph[**n]) else {
            continue;
        };
        // Shortest path from start back to start, inside the component.
        let mut previous: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(node) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = graph
                .neighbors(node)
                .filter(|n| members.contains(n))
                .collect();
            next.sort_by_key(|n| graph[*n]);
            for n in next {
                if n == start {
                    closing = Some(node);
                    break 'search;
                }
                if let std::collections::btree_map::Entry::Vacant(e) = previous.entry(n) {
                    e.insert(node);
                    queue.push_back(n);
                }
            }
        }
        let Some(mut node) = closing else {
            continue;
        };
        let mut path = vec![graph[start]];
        let mut back = vec![graph[node]];
        while node != start {
            node = previous[&node];
            if node != start {
                back.push(graph[node]);
            }
        }
        back.reverse();
        path.extend(back);
        path.push(graph[start]);
        out.push(path);
    }
    out.sort();
    out
}

/// Assigns each task a layer: 0 for tasks without dependencies, else one more than
/// the deepest dependency. Requires an acyclic graph.
pub fn layers(task_count: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); task_count];
    let mut pending = vec![0usize; task_count];
    for &(from, to) in edges {
        dependents[to].push(from);
        pending[from] += 1;
    }
    let mut layer = vec![0usize; task_count];
    let mut queue: VecDeque<usize> = (0..task_count).filter(|&i| pending[i] == 0).collect();
    while let Some(task) = queue.pop_front() {
        for &dependent in &dependents[task] {
            layer[dependent] = layer[dependent].max(layer[task] + 1);
            pending[dependent] -= 1;
            if pending[dependent] == 0 {
                queue.push_back(dependent);
            }
        }
    }
    layer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_whole_cycle_path() {
        // 0 -> 1 -> 2 -> 0, and 3 depends on 0 (not in the cycle).
        let edges = [(0, 1), (1, 2), (2, 0), (3, 0)];
        assert_eq!(cycles(4, &edges), vec![vec![0, 1, 2, 0]]);
    }

    #[test]
    fn reports_separate_cycles_and_ignores_dags() {
        let edges = [(0, 1), (1, 0), (2, 3), (3, 2), (4, 0)];
        assert_eq!(cycles(5, &edges), vec![vec![0, 1, 0], vec![2, 3, 2]]);
        assert!(cycles(3, &[(0, 1), (1, 2), (0, 2)]).is_empty());
    }

    #[test]
    fn picks_the_shortest_cycle_through_the_first_task() {
        // 0 -> 1 -> 0 and 0 -> 2 -> 3 -> 0 share task 0.
        let edges = [(0, 2), (2, 3), (3, 0), (0, 1), (1, 0)];
        assert_eq!(cycles(4, &edges), vec![vec![0, 1, 0]]);
    }

    #[test]
    fn layers_follow_longest_dependency_chain() {
        // diamond: 1 and 2 depend on 0, 3 depends on 1 and 2.
        let edges = [(1, 0), (2, 0), (3, 1), (3, 2)];
        assert_eq!(layers(4, &edges), vec![0, 1, 1, 2]);
    }
}
