/* fault.c — the SIGBUS guard over ulc's file mappings (fault.h). */
#define _GNU_SOURCE /* MAP_ANONYMOUS */
#include "common/fault.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define MAX_GUARDS 1024

/* A guarded range. start is published last (release) and cleared first, so the handler, which
 * reads start first (acquire), never sees a half-written slot. */
typedef struct guard {
    uintptr_t start, end; /* [start, end), end rounded up to a page */
    int *changed;
} guard;

static guard g_guards[MAX_GUARDS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* writers of g_guards */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static struct sigaction g_prev; /* the handler before ours, for faults that are not ours */
static uintptr_t g_page;

/* Hands a signal that is not ours to the handler that was there before. */
static void chain(int sig, siginfo_t *si, void *uc) {
    if (g_prev.sa_flags & SA_SIGINFO) {
        if (g_prev.sa_sigaction) g_prev.sa_sigaction(sig, si, uc);
        return;
    }
    if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN) {
        g_prev.sa_handler(sig);
        return;
    }
    /* the default action: a fault repeats when we return, a sent signal is sent again */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    if (si->si_code <= 0) raise(sig);
}

static void on_sigbus(int sig, siginfo_t *si, void *uc) {
    uintptr_t a = (uintptr_t)si->si_addr;
    if (si->si_code > 0) { /* a fault, not a kill */
        for (int i = 0; i < MAX_GUARDS; i++) {
            uintptr_t s = __atomic_load_n(&g_guards[i].start, __ATOMIC_ACQUIRE);
            if (!s || a < s) continue;
            uintptr_t e = __atomic_load_n(&g_guards[i].end, __ATOMIC_RELAXED);
            if (a >= e) continue;
            uintptr_t from = a & ~(g_page - 1);
            void *z = mmap((void *)from, e - from, PROT_READ,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (z == MAP_FAILED) break;
            int *c = __atomic_load_n(&g_guards[i].changed, __ATOMIC_RELAXED);
            if (c) __atomic_store_n(c, 1, __ATOMIC_RELEASE);
            return; /* the read is retried and sees zeros */
        }
    }
    chain(sig, si, uc);
}

static void install(void) {
    g_page = (uintptr_t)sysconf(_SC_PAGESIZE);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGBUS, &sa, &g_prev);
}

int ulc_fault_guard(const void *p, size_t n, int *changed) {
    if (!p || !n) return -1;
    pthread_once(&g_once, install);
    uintptr_t s = (uintptr_t)p, e = (s + n + g_page - 1) & ~(g_page - 1);
    int slot = -1;
    pthread_mutex_lock(&g_mu);
    for (int i = 0; i < MAX_GUARDS && slot < 0; i++)
        if (!__atomic_load_n(&g_guards[i].start, __ATOMIC_RELAXED)) slot = i;
    if (slot >= 0) {
        __atomic_store_n(&g_guards[slot].changed, changed, __ATOMIC_RELAXED);
        __atomic_store_n(&g_guards[slot].end, e, __ATOMIC_RELAXED);
        __atomic_store_n(&g_guards[slot].start, s, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&g_mu);
    return slot;
}

void ulc_fault_unguard(int slot) {
    if (slot < 0 || slot >= MAX_GUARDS) return;
    pthread_mutex_lock(&g_mu);
    __atomic_store_n(&g_guards[slot].start, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&g_guards[slot].changed, NULL, __ATOMIC_RELAXED);
    pthread_mutex_unlock(&g_mu);
}
