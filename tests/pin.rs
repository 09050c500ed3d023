//! `pin_cores`: each core thread (`wsedge-core-N`) is pinned to one CPU of
//! the process's allowed set, core i to its i-th CPU (wrapping), as
//! /proc/self/task/<tid>/status `Cpus_allowed_list` shows.

mod common;

use std::time::Duration;

use common::*;

/// CPUs in a `Cpus_allowed_list` value ("0-3,6").
fn cpu_list(list: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => cpus.extend(a.parse::<usize>().unwrap()..=b.parse().unwrap()),
            None => cpus.push(part.parse().unwrap()),
        }
    }
    cpus
}

/// The `Cpus_allowed_list` of a status file.
fn allowed(status: &str) -> Vec<usize> {
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in status");
    cpu_list(line)
}

/// (core index, CPUs allowed) of every `wsedge-core-N` thread of this
/// process.
fn core_threads() -> Vec<(usize, Vec<usize>)> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue; // the thread just ended
        };
        let Some(i) = comm.trim().strip_prefix("wsedge-core-") else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue;
        };
        found.push((i.parse().unwrap(), allowed(&status)));
    }
    found.sort();
    found
}

#[test]
fn pin_cores_pins_each_core_thread_within_the_allowed_set() {
    // The process's allowed set, as this (unpinned) thread sees it.
    let set = allowed(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    assert!(!set.is_empty());
    let mut cfg = config(2);
    cfg.pin_cores = true;
    let server = start(cfg);
    // Each core pins itself as its thread starts: wait for both.
    let mut threads = Vec::new();
    let pinned = wait_until(Duration::from_secs(5), || {
        threads = core_threads();
        threads.len() == 2 && threads.iter().all(|(_, cpus)| cpus.len() == 1)
    });
    assert!(pinned, "both core threads pinned to one CPU: {threads:?}");
    for (i, cpus) in &threads {
        assert_eq!(
            cpus[0],
            set[i % set.len()],
            "core {i} on the {i}-th allowed CPU of {set:?}"
        );
    }
    drop(server);
}

#[test]
fn cpu_lists_parse() {
    assert_eq!(cpu_list("0-1\n"), vec![0, 1]);
    assert_eq!(cpu_list("3"), vec![3]);
    assert_eq!(cpu_list("0-2,5,7-8"), vec![0, 1, 2, 5, 7, 8]);
}
