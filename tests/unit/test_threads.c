/* test_threads.c — runtime/threads.c: the cgroup CPU quota (v1 and v2, the tightest along the
 * path, rounded up to whole cores, "max" and -1 as no quota), /proc/loadavg's runnable count,
 * and the picks: a requested count is taken as given, the default stays within what the
 * process may use. Fake cgroup trees are made under a temporary directory. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/threads.h"
#include "tests/unit/check.h"

static char g_root[256];

static void put(const char *rel, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", g_root, rel);
    for (char *p = path + strlen(g_root) + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs(text, f);
    fclose(f);
}

static int limit(const char *proc_cgroup_text) {
    put("self_cgroup", proc_cgroup_text);
    char pc[300], sys[300];
    snprintf(pc, sizeof pc, "%s/self_cgroup", g_root);
    snprintf(sys, sizeof sys, "%s/sys", g_root);
    return ulc_threads_cgroup_limit(pc, sys);
}

static void test_cgroup_v2(void) {
    put("sys/cpu.max", "max 100000\n"); /* the root has none in practice; "max" is none */
    put("sys/jobs/cpu.max", "max 100000\n");
    CHECK(limit("0::/jobs\n") == 0);
    put("sys/jobs/ci/cpu.max", "150000 100000\n"); /* 1.5 cores: 2 threads */
    CHECK(limit("0::/jobs/ci\n") == 2);
    put("sys/jobs/cpu.max", "100000 100000\n"); /* the parent is tighter */
    CHECK(limit("0::/jobs/ci\n") == 1);
    CHECK(limit("0::/jobs/ci/\n") == 1);
    put("sys/jobs/cpu.max", "400000 100000\n");
    CHECK(limit("0::/jobs/ci\n") == 2);
    /* a path this namespace does not show: the mount's own files count */
    put("sys/cpu.max", "300000 100000\n");
    CHECK(limit("0::/elsewhere/deep\n") == 3);
    CHECK(limit("garbage\n\n0\n") == 0);
}

static void test_cgroup_v1(void) {
    put("sys/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("sys/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    CHECK(limit("4:cpu,cpuacct:/\n") == 0);
    put("sys/cpu,cpuacct/box/cpu.cfs_quota_us", "250000\n");
    put("sys/cpu,cpuacct/box/cpu.cfs_period_us", "100000\n");
    CHECK(limit("4:memory:/box\n4:cpu,cpuacct:/box\n") == 3);
    CHECK(limit("4:cpuacct:/box\n") == 0); /* not the cpu controller */
    put("sys/cpu/solo/cpu.cfs_quota_us", "50000\n"); /* a "cpu" mount of its own */
    put("sys/cpu/solo/cpu.cfs_period_us", "100000\n");
    CHECK(limit("3:cpu:/solo\n") == 1);
}

static void test_loadavg(void) {
    char p[300];
    snprintf(p, sizeof p, "%s/loadavg", g_root);
    put("loadavg", "0.52 0.58 0.59 3/118 30978\n");
    CHECK(ulc_threads_others_running(p) == 2);
    put("loadavg", "0.00 0.00 0.00 1/90 12\n");
    CHECK(ulc_threads_others_running(p) == 0);
    put("loadavg", "not a loadavg\n");
    CHECK(ulc_threads_others_running(p) == -1);
    snprintf(p, sizeof p, "%s/missing", g_root);
    CHECK(ulc_threads_others_running(p) == -1);
}

static void test_picks(void) {
    CHECK(ulc_threads_pick(3) == 3);
    CHECK(ulc_threads_pick(1) == 1);
    int avail = ulc_threads_available();
    cpu_set_t set;
    CPU_ZERO(&set);
    CHECK(sched_getaffinity(0, sizeof set, &set) == 0);
    CHECK(avail >= 1 && avail <= CPU_COUNT(&set));
    for (int i = 0; i < 5; i++) {
        int t = ulc_threads_pick(0);
        CHECK(t >= 1 && t <= avail);
    }
}

int main(void) {
    snprintf(g_root, sizeof g_root, "/tmp/ulc_test_threads.XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 2;
    }
    test_cgroup_v2();
    test_cgroup_v1();
    test_loadavg();
    test_picks();
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    printf("test_threads: %s (%d failed checks)\n", g_failed_checks ? "FAILED" : "ok", g_failed_checks);
    return g_failed_checks ? 1 : 0;
}
