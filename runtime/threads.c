/* threads.c — the thread count of a session: what the process may use (affinity, cgroup quota,
 * OMP_NUM_THREADS) and what other work leaves free now. */
#define _GNU_SOURCE
#include <dirent.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/threads.h"

/* ---- what the process may use ------------------------------------------------------------------ */

static int read_line(const char *path, char *buf, size_t size) {
    FILE *f = fopen(path, "re");
    if (!f) return -1;
    int ok = fgets(buf, (int)size, f) != NULL;
    fclose(f);
    return ok ? 0 : -1;
}

/* Whole cores of quota/period, rounded up; 0 for no quota. */
static int cores_of(long long quota, long long period) {
    if (quota <= 0 || period <= 0) return 0;
    long long c = (quota + period - 1) / period;
    return c > INT_MAX ? INT_MAX : (int)c;
}

/* The tightest limit along dir/path and its ancestors up to dir: v2 reads cpu.max, v1 the
 * cfs pair. */
static int limit_along(const char *dir, const char *path, int v2) {
    char rel[PATH_MAX], file[PATH_MAX * 2], buf[128];
    snprintf(rel, sizeof rel, "%s", path);
    int best = 0;
    for (;;) {
        size_t n = strlen(rel);
        while (n > 0 && rel[n - 1] == '/') rel[--n] = 0; /* "/a/b/" → "/a/b"; "/" → "" */
        int c = 0;
        if (v2) {
            snprintf(file, sizeof file, "%s%s/cpu.max", dir, rel);
            char q[32];
            long long period = 0;
            if (read_line(file, buf, sizeof buf) == 0 && sscanf(buf, "%31s %lld", q, &period) == 2 &&
                strcmp(q, "max") != 0)
                c = cores_of(atoll(q), period);
        } else {
            long long quota = -1, period = 0;
            snprintf(file, sizeof file, "%s%s/cpu.cfs_quota_us", dir, rel);
            if (read_line(file, buf, sizeof buf) == 0) quota = atoll(buf);
            snprintf(file, sizeof file, "%s%s/cpu.cfs_period_us", dir, rel);
            if (read_line(file, buf, sizeof buf) == 0) period = atoll(buf);
            c = cores_of(quota, period);
        }
        if (c > 0 && (best == 0 || c < best)) best = c;
        char *slash = strrchr(rel, '/');
        if (!slash) break;
        *slash = 0;
    }
    return best;
}

int ulc_threads_cgroup_limit(const char *proc_cgroup, const char *sys_root) {
    FILE *f = fopen(proc_cgroup, "re");
    if (!f) return 0;
    char line[PATH_MAX + 256], dir[PATH_MAX];
    int best = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = 0;
        /* "ID:CONTROLLERS:PATH" */
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2) continue;
        *c2 = 0;
        const char *ctrls = c1 + 1, *path = c2 + 1;
        int lim = 0;
        if (!*ctrls) { /* v2: the unified hierarchy */
            snprintf(dir, sizeof dir, "%s", sys_root);
            lim = limit_along(dir, path, 1);
            if (!lim) { /* hybrid mounts put it at unified/ */
                snprintf(dir, sizeof dir, "%s/unified", sys_root);
                lim = limit_along(dir, path, 1);
            }
        } else {
            int has_cpu = 0;
            char list[256];
            snprintf(list, sizeof list, "%s", ctrls);
            for (char *sv, *t = strtok_r(list, ",", &sv); t; t = strtok_r(NULL, ",", &sv))
                if (!strcmp(t, "cpu")) has_cpu = 1;
            if (!has_cpu) continue;
            snprintf(dir, sizeof dir, "%s/%s", sys_root, ctrls);
            lim = limit_along(dir, path, 0);
            if (!lim) {
                snprintf(dir, sizeof dir, "%s/cpu", sys_root);
                lim = limit_along(dir, path, 0);
            }
        }
        if (lim > 0 && (best == 0 || lim < best)) best = lim;
    }
    fclose(f);
    return best;
}

static int affinity_cores(void) {
    for (int ncpu = 1024; ncpu <= (1 << 16); ncpu *= 4) {
        cpu_set_t *set = CPU_ALLOC((size_t)ncpu);
        if (!set) return 0;
        size_t sz = CPU_ALLOC_SIZE((size_t)ncpu);
        CPU_ZERO_S(sz, set);
        if (sched_getaffinity(0, sz, set) == 0) {
            int n = CPU_COUNT_S(sz, set);
            CPU_FREE(set);
            return n;
        }
        CPU_FREE(set);
    }
    return 0;
}

static int g_available;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void find_available(void) {
    int n = affinity_cores();
    if (n <= 0) {
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        n = online > 0 && online < INT_MAX ? (int)online : 1;
    }
    int quota = ulc_threads_cgroup_limit("/proc/self/cgroup", "/sys/fs/cgroup");
    if (quota > 0 && quota < n) n = quota;
    const char *env = getenv("OMP_NUM_THREADS"); /* "4" or a nesting list "4,2" */
    if (env && *env) {
        char *end;
        long v = strtol(env, &end, 10);
        if (end != env && (*end == 0 || *end == ',') && v > 0 && v < n) n = (int)v;
    }
    g_available = n > 0 ? n : 1;
}

int ulc_threads_available(void) {
    pthread_once(&g_once, find_available);
    return g_available;
}

/* ---- what other work leaves free --------------------------------------------------------------- */

int ulc_threads_others_running(const char *loadavg) {
    char buf[256];
    if (read_line(loadavg, buf, sizeof buf) != 0) return -1;
    double a, b, c;
    long running, total;
    if (sscanf(buf, "%lf %lf %lf %ld/%ld", &a, &b, &c, &running, &total) != 5) return -1;
    return running > 1 ? (int)(running - 1) : 0; /* the caller is one of them */
}

/* Threads of this process running now besides the caller (OpenMP workers still spinning, the
 * output copier), which /proc/loadavg counts as well. */
static int own_running(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return 0;
    pid_t me = gettid();
    int n = 0;
    struct dirent *e;
    char path[300], buf[512];
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) == me) continue;
        snprintf(path, sizeof path, "/proc/self/task/%s/stat", e->d_name);
        if (read_line(path, buf, sizeof buf) != 0) continue;
        const char *rp = strrchr(buf, ')'); /* "tid (comm) S ..." */
        if (rp && rp[1] == ' ' && rp[2] == 'R') n++;
    }
    closedir(d);
    return n;
}

/* ---- tests: a fixed sequence of picks -------------------------------------------------------- */

static int g_test_picks[16], g_test_n;
static unsigned g_test_next; /* atomically incremented */
static pthread_once_t g_test_once = PTHREAD_ONCE_INIT;

static void read_test_picks(void) {
    const char *e = getenv("ULC_TEST_THREAD_PICKS");
    while (e && *e && g_test_n < 16) {
        char *end;
        long v = strtol(e, &end, 10);
        if (end == e || v < 1 || v > 256) break;
        g_test_picks[g_test_n++] = (int)v;
        e = *end == ',' ? end + 1 : end;
    }
}

int ulc_threads_test_picks(void) {
    pthread_once(&g_test_once, read_test_picks);
    return g_test_n > 0;
}

int ulc_threads_pick(int requested) {
    if (requested > 0) return requested;
    if (ulc_threads_test_picks())
        return g_test_picks[__atomic_fetch_add(&g_test_next, 1, __ATOMIC_RELAXED) % (unsigned)g_test_n];
    int avail = ulc_threads_available();
    if (avail == 1) return 1;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online <= 0) return avail;
    /* the median of three looks a quarter millisecond apart: a task that ran at one instant is
     * not load */
    int s[3];
    for (int i = 0; i < 3; i++) {
        if (i) nanosleep(&(struct timespec){0, 250000}, NULL);
        int o = ulc_threads_others_running("/proc/loadavg");
        if (o < 0) return avail;
        o -= own_running();
        s[i] = o > 0 ? o : 0;
    }
    int lo = s[0] < s[1] ? s[0] : s[1], hi = s[0] < s[1] ? s[1] : s[0];
    int others = s[2] < lo ? lo : s[2] > hi ? hi : s[2];
    long idle = online - others;
    int t = idle < avail ? (int)idle : avail;
    return t < 1 ? 1 : t;
}

int ulc_threads_pick_recent(int requested) {
    if (requested > 0) return requested;
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static double at = -1;
    static int last = 1;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    double now = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    pthread_mutex_lock(&mu);
    if (at < 0 || now - at >= 0.5 || ulc_threads_test_picks()) {
        last = ulc_threads_pick(0);
        at = now;
    }
    int t = last;
    pthread_mutex_unlock(&mu);
    return t;
}
