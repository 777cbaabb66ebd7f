/*
 * threads.h — how many threads a session runs on.
 *
 * `--threads N` (N > 0) is taken as given. The default is decided when a session starts: the
 * cores this process may use (its CPU affinity mask, its cgroup's CPU quota, OMP_NUM_THREADS
 * when set), less the cores other work is running on at that moment (/proc/loadavg's runnable
 * count), and at least one. On a shared machine a team of threads waits at every barrier for
 * the member the scheduler preempted, so one thread beats two on two busy cores; the runtime's
 * results never depend on the thread count (see runtime/cpu/k_grad_conv.c), so choosing it by
 * load costs no reproducibility.
 */
#ifndef ULC_RUNTIME_THREADS_H
#define ULC_RUNTIME_THREADS_H

/* The cores this process may use: affinity ∩ cgroup quota ∩ OMP_NUM_THREADS; >= 1. Read once. */
int ulc_threads_available(void);

/* requested > 0: requested. Otherwise ulc_threads_available() less the cores other runnable
 * tasks occupy now, at least 1. */
int ulc_threads_pick(int requested);

/* ulc_threads_pick(requested), with the default's answer kept for half a second: for loops that
 * ask often (a merge asks per chunk of every tensor). Thread-safe. */
int ulc_threads_pick_recent(int requested);

/* Tests only: with ULC_TEST_THREAD_PICKS="2,1,3" in the environment the default picks cycle
 * through those counts, and sessions look again at every run (1 returned); 0 otherwise. */
int ulc_threads_test_picks(void);

/* The CPU quota of the cgroup the file proc_cgroup (as /proc/self/cgroup) places this process
 * in, under the cgroup file systems mounted at sys_root (as /sys/fs/cgroup): cgroup v2's cpu.max
 * or v1's cpu.cfs_quota_us / cpu.cfs_period_us, the tightest along the path, rounded up to whole
 * cores. 0 when there is none. Exposed for tests. */
int ulc_threads_cgroup_limit(const char *proc_cgroup, const char *sys_root);

/* Tasks runnable now other than the caller, from a /proc/loadavg-format file; -1 unreadable. */
int ulc_threads_others_running(const char *loadavg);

#endif
