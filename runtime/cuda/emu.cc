/*
 * emu.cc — the host emulator of the CUDA runtime declared in runtime/cuda/emu.h: memory, streams,
 * events and errors on the host; the launch scheduler; a mini cuBLAS.
 *
 * Device memory comes from a few big mappings ("regions": 64 MiB chunks shared by the small
 * allocations, one of its own per allocation above 32 MiB), and while no emulated device work
 * runs they are all PROT_NONE: host code that reads or writes device memory (a kernel's prepare
 * reading a plan constant through `data` instead of `host`, the planner reading an output) faults
 * at once, as it would crash or read garbage on a GPU, and a SIGSEGV handler names the
 * allocation, prints a backtrace and aborts. The device's own work (a launch, a copy, a set, an
 * sgemm, the 0xFF fill of cudaMalloc) opens every region for its duration: a count of such work
 * in flight over all OS threads, under the memory mutex; the regions close when it falls to zero.
 * So a few mprotect calls per launch, whatever the number of allocations. While one OS thread
 * runs device work, the host code of another is not trapped. ULC_CUDA_EMU_PROTECT=0 turns the
 * protection off (the regions stay open; the allocator is the same).
 *
 * A launch runs on the calling OS thread: the blocks one after another, a block's threads as
 * cooperative fibers. Fibers are workers: a worker takes the next thread of the block that has
 * not started and runs it; only a thread that waits (at __syncthreads or a warp collective)
 * keeps its worker, and the scheduler then starts another one. So a kernel without barriers
 * runs every thread of a block on one worker with no switch at all, and a block needs at most
 * as many workers (and 64 KiB stacks) as it has threads waiting at once. Workers and their
 * stacks stay for the next launches of the OS thread.
 *
 * The switch: on x86-64, a few instructions saving the callee-saved registers (no signal-mask
 * syscall, unlike glibc's swapcontext: about ten times faster on barrier-heavy kernels);
 * elsewhere, with a CET shadow stack active, or with ULC_CUDA_EMU_UCONTEXT=1 in the environment,
 * ucontext. Either way a fiber that waits hands over to the next runnable one directly. Not for
 * sanitizer builds (CMake leaves the emulator out of them): their instrumentation does not
 * follow the fibers.
 */
#include "runtime/cuda/emu.h"

#include <errno.h>
#include <execinfo.h>
#include <link.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <vector>

__thread uint3 threadIdx;
__thread uint3 blockIdx;
__thread uint3 blockDim;
__thread uint3 gridDim;

namespace {

/* ---- errors ---------------------------------------------------------------------------------- */

thread_local cudaError_t g_last = cudaSuccess;

cudaError_t fail(cudaError_t e) {
    g_last = e;
    return e;
}

/* ---- device memory --------------------------------------------------------------------------- */

constexpr size_t kTotalMem = (size_t)8 << 30;
constexpr size_t kSmemDefault = 48 << 10, kSmemOptin = 227 << 10;
constexpr size_t kAlign = 256;                    /* cudaMalloc's alignment and granule */
constexpr size_t kChunk = (size_t)64 << 20;       /* a region the small allocations share */
constexpr size_t kOwnRegion = kChunk / 2;         /* above this, an allocation has its own */
constexpr size_t kHuge = (size_t)2 << 20;         /* regions are aligned to it (THP) */
constexpr size_t kDontNeed = kHuge;               /* freed huge pages go back to the system */
constexpr int kMaxRegions = 1024;

inline size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

/* The regions, for the SIGSEGV handler: read without a lock (slots are set and cleared under
 * Mem::mu; a cleared slot has hi 0). */
std::atomic<uintptr_t> g_reg_lo[kMaxRegions], g_reg_hi[kMaxRegions];
std::atomic<int> g_reg_top{0}; /* slots at and above it were never used */

struct Region {
    size_t len;
    bool own; /* one allocation's: unmapped by its cudaFree */
    int slot; /* in g_reg_lo / g_reg_hi */
};

struct Mem {
    std::mutex mu;
    std::map<uintptr_t, size_t> blocks;   /* live allocations: base -> bytes asked for */
    std::map<uintptr_t, Region> regions;  /* base -> region */
    std::map<uintptr_t, size_t> free_at;  /* free ranges inside chunks: base -> bytes */
    std::set<std::pair<size_t, uintptr_t>> free_by_size; /* the same, (bytes, base) */
    size_t used = 0;                      /* bytes of live allocations (rounded up) */
    int depth = 0;                        /* device work in flight, all OS threads */
    bool protect = true;                  /* ULC_CUDA_EMU_PROTECT */
    size_t page = 4096;
};

void install_trap();

Mem &mem() {
    static Mem *m = [] { /* never destroyed: frees may come late in exit */
        Mem *n = new Mem;
        const char *e = getenv("ULC_CUDA_EMU_PROTECT");
        n->protect = !(e && e[0] == '0' && e[1] == 0);
        long pg = sysconf(_SC_PAGESIZE);
        if (pg > 0) n->page = (size_t)pg;
        if (n->protect) install_trap();
        return n;
    }();
    return *m;
}

/* The protection every region has now (Mem::mu held). */
int region_prot(const Mem &m) { return !m.protect || m.depth > 0 ? PROT_READ | PROT_WRITE : PROT_NONE; }

void protect_all(Mem &m, int prot) {
    for (auto &r : m.regions)
        if (mprotect(reinterpret_cast<void *>(r.first), r.second.len, prot) != 0) {
            fprintf(stderr, "ulc CUDA emulator: mprotect of device memory failed\n");
            abort();
        }
}

/* Device work (a launch, a copy, a set, an sgemm) runs between dev_enter and dev_exit: device
 * memory is open to the host meanwhile. Nests, and counts over all OS threads. */
void dev_enter() {
    Mem &m = mem();
    if (!m.protect) return;
    std::lock_guard<std::mutex> lk(m.mu);
    if (m.depth++ == 0) protect_all(m, PROT_READ | PROT_WRITE);
}
void dev_exit() {
    Mem &m = mem();
    if (!m.protect) return;
    std::lock_guard<std::mutex> lk(m.mu);
    if (--m.depth == 0) protect_all(m, PROT_NONE);
}
struct DevWork {
    DevWork() { dev_enter(); }
    ~DevWork() { dev_exit(); }
    DevWork(const DevWork &) = delete;
    DevWork &operator=(const DevWork &) = delete;
};

/* A new region of len bytes (a multiple of the page), aligned to `align`, with the protection
 * the others have; null when out of address space or slots. Mem::mu held. */
uintptr_t map_region(Mem &m, size_t len, size_t align, bool own) {
    int slot = -1;
    const int top = g_reg_top.load(std::memory_order_relaxed);
    for (int i = 0; i < kMaxRegions && slot < 0; i++)
        if (g_reg_hi[i].load(std::memory_order_relaxed) == 0) slot = i;
    if (slot < 0) return 0;
    size_t span = len + (align > m.page ? align - m.page : 0);
    void *q = mmap(nullptr, span, region_prot(m), MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (q == MAP_FAILED) return 0;
    uintptr_t a = (uintptr_t)q, b = round_up(a, align);
    if (b > a) munmap(q, b - a);
    if (a + span > b + len) munmap(reinterpret_cast<void *>(b + len), a + span - (b + len));
#ifdef MADV_HUGEPAGE
    /* huge pages: far fewer page table entries for every mprotect to flip */
    if (len >= kHuge) madvise(reinterpret_cast<void *>(b), len, MADV_HUGEPAGE);
#endif
    m.regions[b] = Region{len, own, slot};
    g_reg_lo[slot].store(b, std::memory_order_relaxed);
    g_reg_hi[slot].store(b + len, std::memory_order_release);
    if (slot >= top) g_reg_top.store(slot + 1, std::memory_order_release);
    return b;
}

void unmap_region(Mem &m, std::map<uintptr_t, Region>::iterator it) {
    g_reg_hi[it->second.slot].store(0, std::memory_order_release);
    g_reg_lo[it->second.slot].store(0, std::memory_order_relaxed);
    munmap(reinterpret_cast<void *>(it->first), it->second.len);
    m.regions.erase(it);
}

/* The region holding address a, or end(). Mem::mu held. */
std::map<uintptr_t, Region>::iterator region_of(Mem &m, uintptr_t a) {
    auto it = m.regions.upper_bound(a);
    if (it == m.regions.begin()) return m.regions.end();
    --it;
    return a - it->first < it->second.len ? it : m.regions.end();
}

void add_free(Mem &m, uintptr_t a, size_t n) {
    m.free_at[a] = n;
    m.free_by_size.insert({n, a});
}
void take_free(Mem &m, std::map<uintptr_t, size_t>::iterator it) {
    m.free_by_size.erase({it->second, it->first});
    m.free_at.erase(it);
}

/* r bytes (a multiple of kAlign) of a chunk, best fit; 0 when none is left. Mem::mu held. */
uintptr_t chunk_alloc(Mem &m, size_t r) {
    auto f = m.free_by_size.lower_bound({r, 0});
    if (f == m.free_by_size.end()) {
        uintptr_t c = map_region(m, kChunk, kHuge, false);
        if (!c) return 0;
        add_free(m, c, kChunk);
        f = m.free_by_size.lower_bound({r, 0});
    }
    const size_t n = f->first;
    const uintptr_t a = f->second;
    take_free(m, m.free_at.find(a));
    if (n > r) add_free(m, a + r, n - r);
    return a;
}

/* Gives [a, a + r) back to its chunk, merging with the free neighbours in the same chunk; a chunk
 * left wholly free is unmapped (but the last one), the whole huge pages of a free range go back to
 * the system. Mem::mu held. */
void chunk_free(Mem &m, std::map<uintptr_t, Region>::iterator reg, uintptr_t a, size_t r) {
    const uintptr_t lo = reg->first, hi = reg->first + reg->second.len;
    auto next = m.free_at.lower_bound(a);
    if (next != m.free_at.end() && next->first == a + r && next->first < hi) {
        r += next->second;
        take_free(m, next);
    }
    auto prev = m.free_at.lower_bound(a);
    if (prev != m.free_at.begin()) {
        --prev;
        if (prev->first >= lo && prev->first + prev->second == a) {
            a = prev->first;
            r += prev->second;
            take_free(m, prev);
        }
    }
    if (a == lo && r == reg->second.len) { /* wholly free: unmapped, unless it is the last */
        int chunks = 0;
        for (auto &g : m.regions) chunks += !g.second.own;
        if (chunks > 1) {
            unmap_region(m, reg);
            return;
        }
    }
    add_free(m, a, r);
    /* whole huge pages only: a part of one would split it into small pages, and every later
     * mprotect would flip each of them */
    uintptr_t p0 = round_up(a, kHuge), p1 = (a + r) / kHuge * kHuge;
    if (p1 > p0 && p1 - p0 >= kDontNeed)
        madvise(reinterpret_cast<void *>(p0), p1 - p0, MADV_DONTNEED);
}

/* Whether [p, p + n) lies inside one cudaMalloc'd block. */
bool dev_range(const void *p, size_t n) {
    if (n == 0) return true;
    uintptr_t a = (uintptr_t)p;
    Mem &m = mem();
    std::lock_guard<std::mutex> lk(m.mu);
    auto it = m.blocks.upper_bound(a);
    if (it == m.blocks.begin()) return false;
    --it;
    return a - it->first <= it->second && n <= it->second - (a - it->first);
}

/* Whether address a lies in device memory (a region), live or not. Lock-free. */
bool in_regions(uintptr_t a) {
    const int top = g_reg_top.load(std::memory_order_acquire);
    for (int i = 0; i < top; i++) {
        uintptr_t hi = g_reg_hi[i].load(std::memory_order_acquire);
        if (hi && a < hi && a >= g_reg_lo[i].load(std::memory_order_relaxed)) return true;
    }
    return false;
}

/* ---- the trap: host code touching device memory ------------------------------------------------ */

struct sigaction g_prev_segv;

void say(const char *s) {
    size_t n = strlen(s);
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

/* The objects loaded when the trap was installed (their code lies in [lo, hi)), so that the
 * handler can name source lines without the loader. */
struct Obj {
    uintptr_t lo, hi, bias;
    char path[512];
};
Obj g_objs[64];
int g_nobj;

int note_obj(struct dl_phdr_info *info, size_t, void *) {
    if (g_nobj >= 64) return 1;
    Obj &o = g_objs[g_nobj];
    o.lo = UINTPTR_MAX;
    o.hi = 0;
    o.bias = (uintptr_t)info->dlpi_addr;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) &ph = info->dlpi_phdr[i];
        if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X)) continue;
        uintptr_t a = o.bias + ph.p_vaddr, b = a + ph.p_memsz;
        if (a < o.lo) o.lo = a;
        if (b > o.hi) o.hi = b;
    }
    const char *name = info->dlpi_name;
    if (g_nobj == 0 && (!name || !*name)) { /* the program */
        ssize_t n = readlink("/proc/self/exe", o.path, sizeof o.path - 1);
        o.path[n > 0 ? n : 0] = 0;
    } else {
        snprintf(o.path, sizeof o.path, "%s", name ? name : "");
    }
    /* not the C and C++ runtimes (no debug lines there), not the vDSO (no file) */
    if (o.hi > o.lo && o.path[0] == '/' && !strstr(o.path, "/libc.so") &&
        !strstr(o.path, "/libstdc++") && !strstr(o.path, "/libgcc_s"))
        g_nobj++;
    return 0;
}

/* The frames' source lines, through addr2line (binutils) if it is there, an object at a time. */
void symbolize(void *const *frames, int nf) {
    static char hex[64][24];
    for (int o = 0; o < g_nobj; o++) {
        const char *argv[64 + 10];
        int na = 0, nh = 0;
        argv[na++] = "addr2line";
        argv[na++] = "-a";
        argv[na++] = "-C";
        argv[na++] = "-f";
        argv[na++] = "-i";
        argv[na++] = "-p";
        argv[na++] = "-e";
        argv[na++] = g_objs[o].path;
        for (int i = 0; i < nf && nh < 64; i++) {
            uintptr_t a = (uintptr_t)frames[i];
            if (a < g_objs[o].lo || a >= g_objs[o].hi) continue;
            /* a return address points after its call (but frame 0's is the fault itself) */
            snprintf(hex[nh], sizeof hex[nh], "0x%zx", (size_t)(a - g_objs[o].bias - (i > 0)));
            argv[na++] = hex[nh++];
        }
        if (!nh) continue;
        argv[na] = nullptr;
        char head[600];
        snprintf(head, sizeof head, "  source lines in %s:\n", g_objs[o].path);
        say(head);
        pid_t pid = fork();
        if (pid == 0) {
            dup2(2, 1);
            execvp("addr2line", const_cast<char *const *>(argv));
            _exit(127);
        }
        if (pid > 0) {
            int st = 0;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
        }
    }
}

void on_segv(int sig, siginfo_t *si, void *uc) {
    const uintptr_t a = (uintptr_t)si->si_addr;
    if (si->si_code > 0 && in_regions(a)) {
        char line[512];
        /* the lock, for the allocation: never wait on this thread's own (a bug in here) */
        Mem &m = mem();
        bool locked = false;
        for (int i = 0; i < 2000 && !(locked = m.mu.try_lock()); i++) {
            struct timespec ts = {0, 500000};
            nanosleep(&ts, nullptr);
        }
        int n = snprintf(line, sizeof line, "ulc CUDA emulator: host code touched device memory at %p",
                         (void *)a);
        if (locked) {
            auto it = m.blocks.upper_bound(a);
            if (it != m.blocks.begin() && a - std::prev(it)->first < round_up(std::prev(it)->second, kAlign)) {
                --it;
                snprintf(line + n, sizeof line - (size_t)n,
                         " (allocation of %zu bytes at %p, offset %zu)\n", it->second,
                         (void *)it->first, (size_t)(a - it->first));
            } else {
                snprintf(line + n, sizeof line - (size_t)n,
                         " (no live allocation there: freed device memory)\n");
            }
            m.mu.unlock();
        } else {
            snprintf(line + n, sizeof line - (size_t)n, "\n");
        }
        say(line);
        say("  (only kernels, cudaMemcpy/cudaMemset and cuBLAS may touch device memory: a GPU "
            "would crash or read garbage here; a plan constant's values are at tensor->host, "
            "ulc_k_host_bytes(); ULC_CUDA_EMU_PROTECT=0 turns this check off)\n"
            "  backtrace:\n");
        void *frames[64];
        int nf = backtrace(frames, 64);
        /* frames 0 and 1: this handler and the signal trampoline; 2: the faulting instruction */
        int skip = nf > 2 ? 2 : 0;
        backtrace_symbols_fd(frames + skip, nf - skip, 2);
        symbolize(frames + skip, nf - skip);
        abort();
    }
    /* not ours: the previous handler, or the default action */
    if (g_prev_segv.sa_flags & SA_SIGINFO) {
        if ((void *)g_prev_segv.sa_sigaction != (void *)SIG_DFL &&
            (void *)g_prev_segv.sa_sigaction != (void *)SIG_IGN) {
            g_prev_segv.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (g_prev_segv.sa_handler != SIG_DFL && g_prev_segv.sa_handler != SIG_IGN) {
        g_prev_segv.sa_handler(sig);
        return;
    }
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, nullptr);
    if (si->si_code <= 0) raise(sig); /* sent, not a fault: the fault would come again on return */
}

void install_trap() {
    void *warm[4];
    (void)backtrace(warm, 4); /* loads libgcc's unwinder now, not in the handler */
    dl_iterate_phdr(note_obj, nullptr);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_prev_segv);
}

std::atomic<size_t> g_optin{kSmemDefault}; /* cudaFuncSetAttribute's largest dynamic smem */

struct Clock {
    static double now_ms() {
        using namespace std::chrono;
        return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
    }
};

} // namespace

struct CUstream_st {
    unsigned flags;
};
struct CUevent_st {
    unsigned flags;
    bool recorded;
    double ms;
};

cudaError_t cudaMalloc(void **p, size_t bytes) {
    if (!p) return fail(cudaErrorInvalidValue);
    *p = nullptr;
    if (bytes == 0) return cudaSuccess;
    size_t r = round_up(bytes, kAlign);
    Mem &m = mem();
    uintptr_t a = 0;
    {
        std::lock_guard<std::mutex> lk(m.mu);
        if (r < bytes || r > kTotalMem - m.used) return fail(cudaErrorMemoryAllocation);
        a = r > kOwnRegion ? map_region(m, round_up(r, kHuge), kHuge, true) : chunk_alloc(m, r);
        if (!a) return fail(cudaErrorMemoryAllocation);
        m.used += r;
        m.blocks[a] = bytes;
    }
    DevWork w;
    memset(reinterpret_cast<void *>(a), 0xff, r); /* fresh device memory is garbage: here NaN
                                                     floats, -1 integers */
    *p = reinterpret_cast<void *>(a);
    return cudaSuccess;
}

cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    Mem &m = mem();
    std::lock_guard<std::mutex> lk(m.mu);
    auto it = m.blocks.find((uintptr_t)p);
    if (it == m.blocks.end()) return fail(cudaErrorInvalidValue); /* not ours, or freed */
    const uintptr_t a = it->first;
    const size_t r = round_up(it->second, kAlign);
    m.used -= r;
    m.blocks.erase(it);
    auto reg = region_of(m, a);
    if (reg == m.regions.end()) abort(); /* an allocation outside every region: a bug in here */
    if (reg->second.own) unmap_region(m, reg);
    else chunk_free(m, reg, a, r);
    return cudaSuccess;
}

cudaError_t cudaMallocHost(void **p, size_t bytes) {
    if (!p) return fail(cudaErrorInvalidValue);
    *p = aligned_alloc(256, ((bytes ? bytes : 1) + 255) & ~(size_t)255);
    return *p ? cudaSuccess : fail(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *p) {
    free(p);
    return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    if ((unsigned)kind > (unsigned)cudaMemcpyDefault) return fail(cudaErrorInvalidMemcpyDirection);
    if (bytes == 0) return cudaSuccess;
    if (!dst || !src) return fail(cudaErrorInvalidValue);
    bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (kind == cudaMemcpyDefault) { /* unified addressing: the pointers say */
        dst_dev = in_regions((uintptr_t)dst);
        src_dev = in_regions((uintptr_t)src);
    }
    if ((dst_dev && !dev_range(dst, bytes)) || (src_dev && !dev_range(src, bytes)))
        return fail(cudaErrorInvalidValue);
    /* the host side must be host memory (a GPU's copy in the wrong direction is undefined) */
    if ((!dst_dev && in_regions((uintptr_t)dst)) || (!src_dev && in_regions((uintptr_t)src)))
        return fail(cudaErrorInvalidValue);
    if (!dst_dev && !src_dev) {
        memmove(dst, src, bytes);
        return cudaSuccess;
    }
    DevWork w;
    memmove(dst, src, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
                            cudaStream_t) {
    return cudaMemcpy(dst, src, bytes, kind);
}

cudaError_t cudaMemset(void *p, int value, size_t bytes) {
    if (bytes == 0) return cudaSuccess;
    if (!p || !dev_range(p, bytes)) return fail(cudaErrorInvalidValue);
    DevWork w;
    memset(p, value, bytes);
    return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *p, int value, size_t bytes, cudaStream_t) {
    return cudaMemset(p, value, bytes);
}

cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    Mem &m = mem();
    std::lock_guard<std::mutex> lk(m.mu);
    if (free_bytes) *free_bytes = kTotalMem - m.used;
    if (total_bytes) *total_bytes = kTotalMem;
    return cudaSuccess;
}

cudaError_t ulc_emu_symbol_copy(void *dst, const void *src, size_t bytes, bool dst_dev,
                                bool src_dev) {
    if ((dst_dev && !dev_range(dst, bytes)) || (src_dev && !dev_range(src, bytes)))
        return fail(cudaErrorInvalidValue);
    if (!dst_dev && !src_dev) {
        memcpy(dst, src, bytes);
        return cudaSuccess;
    }
    DevWork w;
    memcpy(dst, src, bytes);
    return cudaSuccess;
}

/* ---- streams and events: everything is synchronous ----------------------------------------- */

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    if (!s) return fail(cudaErrorInvalidValue);
    *s = new CUstream_st{flags};
    return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaDeviceReset(void) { return cudaSuccess; }

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags) {
    if (!e) return fail(cudaErrorInvalidValue);
    *e = new CUevent_st{flags, false, 0.0};
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    if (!e) return fail(cudaErrorInvalidResourceHandle);
    e->recorded = true;
    e->ms = Clock::now_ms();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    return e ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t e) {
    return e ? cudaSuccess : fail(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!ms) return fail(cudaErrorInvalidValue);
    if (!start || !end || !start->recorded || !end->recorded ||
        ((start->flags | end->flags) & cudaEventDisableTiming))
        return fail(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
    delete e;
    return cudaSuccess;
}

/* ---- errors and the device ---------------------------------------------------------------- */

cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError(void) { return g_last; }

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
#define ULC_EMU_NAME(x)                                                                            \
    case x: return #x;
        ULC_EMU_NAME(cudaSuccess)
        ULC_EMU_NAME(cudaErrorInvalidValue)
        ULC_EMU_NAME(cudaErrorMemoryAllocation)
        ULC_EMU_NAME(cudaErrorInitializationError)
        ULC_EMU_NAME(cudaErrorInvalidConfiguration)
        ULC_EMU_NAME(cudaErrorInvalidDevicePointer)
        ULC_EMU_NAME(cudaErrorInvalidMemcpyDirection)
        ULC_EMU_NAME(cudaErrorInvalidDeviceFunction)
        ULC_EMU_NAME(cudaErrorNoDevice)
        ULC_EMU_NAME(cudaErrorInvalidDevice)
        ULC_EMU_NAME(cudaErrorInvalidResourceHandle)
        ULC_EMU_NAME(cudaErrorNotReady)
        ULC_EMU_NAME(cudaErrorLaunchOutOfResources)
        ULC_EMU_NAME(cudaErrorLaunchFailure)
        ULC_EMU_NAME(cudaErrorNotSupported)
        ULC_EMU_NAME(cudaErrorUnknown)
#undef ULC_EMU_NAME
    }
    return "cudaErrorUnknown";
}

const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorNotSupported: return "operation not supported";
    case cudaErrorUnknown: return "unknown error";
    }
    return "unknown error";
}

cudaError_t cudaGetDeviceCount(int *n) {
    if (!n) return fail(cudaErrorInvalidValue);
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : fail(cudaErrorInvalidDevice); }
cudaError_t cudaGetDevice(int *d) {
    if (!d) return fail(cudaErrorInvalidValue);
    *d = 0;
    return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int d) {
    if (!p) return fail(cudaErrorInvalidValue);
    if (d != 0) return fail(cudaErrorInvalidDevice);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "ulc CUDA emulator");
    p->totalGlobalMem = kTotalMem;
    p->sharedMemPerBlock = kSmemDefault;
    p->regsPerBlock = 65536;
    p->warpSize = 32;
    p->maxThreadsPerBlock = 1024;
    p->maxThreadsDim[0] = p->maxThreadsDim[1] = 1024;
    p->maxThreadsDim[2] = 64;
    p->maxGridSize[0] = 0x7fffffff;
    p->maxGridSize[1] = p->maxGridSize[2] = 65535;
    p->clockRate = 1000000;
    p->totalConstMem = 64 << 10;
    p->major = 9;
    p->minor = 0;
    p->multiProcessorCount = 4;
    p->l2CacheSize = 4 << 20;
    p->maxThreadsPerMultiProcessor = 2048;
    p->sharedMemPerMultiprocessor = 228 << 10;
    p->sharedMemPerBlockOptin = kSmemOptin;
    p->memoryBusWidth = 256;
    return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr attr, int d) {
    if (!v) return fail(cudaErrorInvalidValue);
    if (d != 0) return fail(cudaErrorInvalidDevice);
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxBlockDimX: *v = p.maxThreadsDim[0]; break;
    case cudaDevAttrMaxBlockDimY: *v = p.maxThreadsDim[1]; break;
    case cudaDevAttrMaxBlockDimZ: *v = p.maxThreadsDim[2]; break;
    case cudaDevAttrMaxGridDimX: *v = p.maxGridSize[0]; break;
    case cudaDevAttrMaxGridDimY: *v = p.maxGridSize[1]; break;
    case cudaDevAttrMaxGridDimZ: *v = p.maxGridSize[2]; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrL2CacheSize: *v = p.l2CacheSize; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerMultiprocessor: *v = (int)p.sharedMemPerMultiprocessor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    default: return fail(cudaErrorInvalidValue);
    }
    return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int *v) {
    if (!v) return fail(cudaErrorInvalidValue);
    *v = 12040;
    return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int *v) { return cudaDriverGetVersion(v); }

cudaError_t ulc_emu_func_set_attribute(cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
        if (value < 0 || (size_t)value > kSmemOptin) return fail(cudaErrorInvalidValue);
        size_t cur = g_optin.load();
        while ((size_t)value > cur && !g_optin.compare_exchange_weak(cur, (size_t)value)) {
        }
    }
    return cudaSuccess;
}

/* ---- the scheduler --------------------------------------------------------------------------- */

#if defined(__x86_64__) && defined(__ELF__)
#define ULC_EMU_OWN_SWITCH 1
/* ulc_emu_ctx_switch(save, to): pushes the callee-saved registers on the current stack, stores
 * the stack pointer in *save, and pops the same from `to`. The SSE/x87 control words are not
 * switched (kernels do not change them: all fibers share the OS thread's). A new fiber's stack
 * is built to "return" into ulc_emu_ctx_start, which calls r13(r12). */
extern "C" {
__attribute__((visibility("hidden"))) void ulc_emu_ctx_switch(void **save, void *to);
__attribute__((visibility("hidden"))) void ulc_emu_ctx_start(void);
}
__asm__(".pushsection .text\n"
        ".p2align 4\n"
        ".globl ulc_emu_ctx_switch\n"
        ".hidden ulc_emu_ctx_switch\n"
        ".type ulc_emu_ctx_switch,@function\n"
        "ulc_emu_ctx_switch:\n"
        "  pushq %rbp\n"
        "  pushq %rbx\n"
        "  pushq %r12\n"
        "  pushq %r13\n"
        "  pushq %r14\n"
        "  pushq %r15\n"
        "  movq %rsp, (%rdi)\n"
        "  movq %rsi, %rsp\n"
        "  popq %r15\n"
        "  popq %r14\n"
        "  popq %r13\n"
        "  popq %r12\n"
        "  popq %rbx\n"
        "  popq %rbp\n"
        "  ret\n"
        ".size ulc_emu_ctx_switch, .-ulc_emu_ctx_switch\n"
        ".globl ulc_emu_ctx_start\n"
        ".hidden ulc_emu_ctx_start\n"
        ".type ulc_emu_ctx_start,@function\n"
        "ulc_emu_ctx_start:\n"
        "  movq %r12, %rdi\n"
        "  call *%r13\n"
        "  ud2\n"
        ".size ulc_emu_ctx_start, .-ulc_emu_ctx_start\n"
        ".popsection\n");
#else
#define ULC_EMU_OWN_SWITCH 0
#endif

namespace {

constexpr int kMaxThreads = 1024;
enum : uint8_t { T_READY, T_BAR, T_WARP, T_DONE }; /* READY: running, runnable or not started */

struct Fiber {
    void *sp = nullptr; /* own switch: the saved stack pointer */
    ucontext_t uc;      /* ucontext switch */
    void *map = nullptr; /* the stack's mapping (guard page included) */
    size_t map_len = 0;
    int thread = -1;    /* the emulated thread it runs, -1 idle */
    int index = 0;
};

struct Warp {
    int live, arrived, op, width;
    unsigned waiting; /* lanes at the pending rendezvous */
    unsigned mask[32];
    int arg[32];
    unsigned long long val[32];
};

struct Sched {
    bool own_switch = false;
    bool running = false;
    void (*fn)(void *) = nullptr;
    void *arg = nullptr;
    int n = 0, next = 0, done = 0; /* threads per block; the next not started; finished */
    uint3 coord[kMaxThreads];
    uint8_t state[kMaxThreads];
    unsigned long long result[kMaxThreads]; /* a collective's result, per thread */
    Fiber *fiber_of[kMaxThreads];
    int bar_arrived = 0, bar_op = 0, bar_count = 0;
    int bar_list[kMaxThreads];
    Warp warp[kMaxThreads / 32];
    int runq[kMaxThreads]; /* threads a release made runnable, FIFO */
    int rq_head = 0, rq_len = 0;
    Fiber *fib[kMaxThreads];
    int nfib = 0;
    int idle[kMaxThreads];
    int nidle = 0;
    Fiber *cur = nullptr; /* the running fiber; null in the scheduler */
    void *sched_sp = nullptr;
    ucontext_t sched_uc;
    size_t stack_bytes = 0, page = 0;
    unsigned char *smem = nullptr;
    size_t smem_cap = 0;

    ~Sched() { /* the OS thread ends: no launch runs */
        for (int i = 0; i < nfib; i++) {
            munmap(fib[i]->map, fib[i]->map_len);
            delete fib[i];
        }
        free(smem);
    }
};

thread_local Sched *g_s; /* this OS thread's scheduler (a plain pointer: no TLS init check) */

struct SchedOwner { /* frees it when the OS thread ends */
    Sched *s = nullptr;
    ~SchedOwner() {
        if (g_s == s) g_s = nullptr;
        delete s;
    }
};
thread_local SchedOwner g_s_owner;

#if ULC_EMU_OWN_SWITCH
/* Whether a CET shadow stack is on: rdsspq leaves rax 0 (a NOP) when it is not. */
bool shadow_stack_active() {
    unsigned long long ssp = 0;
    __asm__ volatile(".byte 0xf3, 0x48, 0x0f, 0x1e, 0xc8" : "+a"(ssp)); /* rdsspq %rax */
    return ssp != 0;
}
#endif

Sched *sched() {
    if (!g_s) {
        Sched *s = new Sched;
        g_s_owner.s = s;
        const char *e = getenv("ULC_CUDA_EMU_UCONTEXT");
#if ULC_EMU_OWN_SWITCH
        s->own_switch = !(e && *e && *e != '0') && !shadow_stack_active();
#else
        (void)e;
#endif
        s->page = (size_t)sysconf(_SC_PAGESIZE);
        const char *kb = getenv("ULC_CUDA_EMU_STACK_KB");
        size_t bytes = (kb && atol(kb) >= 16 ? (size_t)atol(kb) : 64) << 10;
        s->stack_bytes = (bytes + s->page - 1) / s->page * s->page;
        g_s = s;
    }
    return g_s;
}

[[noreturn]] void die(const char *what) {
    fprintf(stderr, "ulc CUDA emulator: %s\n", what);
    fflush(stderr);
    abort();
}

Sched *in_kernel(const char *what) {
    Sched *s = g_s;
    if (!s || !s->cur || s->cur->thread < 0) {
        fprintf(stderr, "ulc CUDA emulator: %s called outside a kernel\n", what);
        abort();
    }
    return s;
}

inline void set_thread(Sched *s, int t) { threadIdx = s->coord[t]; }

/* Switches from fiber `from` (null: the scheduler) to `to` (null: the scheduler). */
void go(Sched *s, Fiber *from, Fiber *to) {
    s->cur = to;
#if ULC_EMU_OWN_SWITCH
    if (s->own_switch) {
        ulc_emu_ctx_switch(from ? &from->sp : &s->sched_sp, to ? to->sp : s->sched_sp);
        return;
    }
#endif
    if (swapcontext(from ? &from->uc : &s->sched_uc, to ? &to->uc : &s->sched_uc) != 0)
        die("swapcontext failed");
}

Fiber *new_fiber(Sched *s);

/* The fiber to run next: one whose thread a release woke, else a worker for a thread that has
 * not started; null when there is neither (the block is done, or deadlocked). */
Fiber *pick(Sched *s) {
    if (s->rq_len) {
        int t = s->runq[s->rq_head];
        s->rq_head = (s->rq_head + 1) % kMaxThreads;
        s->rq_len--;
        return s->fiber_of[t];
    }
    if (s->next < s->n) return s->nidle ? s->fib[s->idle[--s->nidle]] : new_fiber(s);
    return nullptr;
}

void thread_exit(Sched *s, int t);

/* A worker: runs the block's threads that have not started, one after another, until none is
 * left; then it idles (for the next block or launch). */
void worker_main(void *p) noexcept {
    Fiber *f = static_cast<Fiber *>(p);
    Sched *s = g_s;
    for (;;) {
        while (s->next < s->n) {
            int t = s->next++;
            f->thread = t;
            s->fiber_of[t] = f;
            set_thread(s, t);
            s->fn(s->arg);
            thread_exit(s, t);
        }
        f->thread = -1;
        s->idle[s->nidle++] = f->index;
        go(s, f, pick(s));
    }
}

void uc_entry(void) { worker_main(g_s->cur); }

Fiber *new_fiber(Sched *s) {
    if (s->nfib >= kMaxThreads) die("more than 1024 fibers (scheduler bug)");
    Fiber *f = new Fiber;
    f->index = s->nfib;
    s->fib[s->nfib++] = f;
    size_t len = s->stack_bytes + s->page;
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
#ifdef MAP_STACK
    flags |= MAP_STACK;
#endif
    void *m = mmap(nullptr, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (m == MAP_FAILED) die("cannot map a fiber stack");
    mprotect(m, s->page, PROT_NONE); /* a guard page below the stack: an overflow crashes */
    f->map = m;
    f->map_len = len;
    char *lo = (char *)m + s->page, *top = (char *)m + len;
#if ULC_EMU_OWN_SWITCH
    if (s->own_switch) {
        /* the frame ulc_emu_ctx_switch pops: r15, r14, r13, r12, rbx, rbp, the return address;
         * ulc_emu_ctx_start then calls with the stack 16-byte aligned, as the ABI wants */
        uint64_t *sp = reinterpret_cast<uint64_t *>(top) - 7;
        sp[0] = sp[1] = 0;
        sp[2] = (uint64_t)(uintptr_t)&worker_main;
        sp[3] = (uint64_t)(uintptr_t)f;
        sp[4] = sp[5] = 0;
        sp[6] = (uint64_t)(uintptr_t)&ulc_emu_ctx_start;
        f->sp = sp;
        return f;
    }
#endif
    if (getcontext(&f->uc) != 0) die("getcontext failed");
    f->uc.uc_stack.ss_sp = lo;
    f->uc.uc_stack.ss_size = (size_t)(top - lo);
    f->uc.uc_link = nullptr;
    makecontext(&f->uc, uc_entry, 0);
    return f;
}

/* Suspends the calling thread t until a release makes it runnable again. */
void suspend(Sched *s, int t) {
    go(s, s->cur, pick(s));
    set_thread(s, t);
}

void wake(Sched *s, int t) {
    s->state[t] = T_READY;
    s->runq[(s->rq_head + s->rq_len++) % kMaxThreads] = t;
}

const char *op_name(int op) {
    static const char *const names[ULC_EMU_WARP_OPS_] = {
        "__shfl_sync",       "__shfl_up_sync",    "__shfl_down_sync",  "__shfl_xor_sync",
        "__syncwarp",        "__ballot_sync",     "__any_sync",        "__all_sync",
        "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_min_sync",
        "__reduce_max_sync", "__reduce_and_sync", "__reduce_or_sync",  "__reduce_xor_sync",
        "__activemask"};
    return op >= 0 && op < ULC_EMU_WARP_OPS_ ? names[op] : "?";
}
const char *bar_name(int op) {
    static const char *const names[] = {"__syncthreads", "__syncthreads_count",
                                        "__syncthreads_and", "__syncthreads_or"};
    return names[op & 3];
}

/* Prints up to 12 of the block's threads in state st (warp w only, if w >= 0). */
void list_threads(Sched *s, uint8_t st, int w, const char *what) {
    int count = 0;
    for (int t = 0; t < s->n; t++)
        if (s->state[t] == st && (w < 0 || t >> 5 == w)) count++;
    if (!count) return;
    fprintf(stderr, "  %d thread(s) %s:", count, what);
    int shown = 0;
    for (int t = 0; t < s->n && shown < 12; t++)
        if (s->state[t] == st && (w < 0 || t >> 5 == w)) {
            fprintf(stderr, " (%u,%u,%u)", s->coord[t].x, s->coord[t].y, s->coord[t].z);
            shown++;
        }
    fprintf(stderr, "%s\n", count > shown ? " ..." : "");
}

void where() {
    fprintf(stderr, "in block (%u,%u,%u) of a launch of grid (%u,%u,%u) x block (%u,%u,%u)",
            blockIdx.x, blockIdx.y, blockIdx.z, gridDim.x, gridDim.y, gridDim.z, blockDim.x,
            blockDim.y, blockDim.z);
}

[[noreturn]] void deadlock(Sched *s) {
    fprintf(stderr, "ulc CUDA emulator: deadlock ");
    where();
    fprintf(stderr, ": no thread can go on (a kernel bug)\n");
    if (s->bar_arrived) {
        char what[64];
        snprintf(what, sizeof what, "wait at %s", bar_name(s->bar_op));
        list_threads(s, T_BAR, -1, what);
    }
    for (int w = 0; w < (s->n + 31) / 32; w++)
        if (s->warp[w].arrived) {
            char what[96];
            snprintf(what, sizeof what, "of warp %d wait at %s (%d live lane(s))", w,
                     op_name(s->warp[w].op), s->warp[w].live);
            list_threads(s, T_WARP, w, what);
        }
    list_threads(s, T_DONE, -1, "have returned");
    fprintf(stderr, "  (__syncthreads needs every thread of the block, including those that "
                    "returned; a warp collective every lane of the warp that has not returned)\n");
    fflush(stderr);
    abort();
}

[[noreturn]] void diverged(Sched *s, int t, const char *got, const char *pending, int npending) {
    fprintf(stderr, "ulc CUDA emulator: diverged collective ");
    where();
    fprintf(stderr, ": thread (%u,%u,%u) reached %s while %d other thread(s) wait at %s\n",
            s->coord[t].x, s->coord[t].y, s->coord[t].z, got, npending, pending);
    fflush(stderr);
    abort();
}

/* Every live lane of warp w has arrived: computes each lane's result and wakes the lanes (but
 * self, the caller that goes on; -1 when a returning thread completed the rendezvous). */
void warp_release(Sched *s, int w, int self) {
    Warp &W = s->warp[w];
    const unsigned in = W.waiting;
    const int base = w * 32;
    unsigned pred = 0;
    for (int l = 0; l < 32; l++)
        if ((in >> l & 1) && W.val[l]) pred |= 1u << l;
    for (int l = 0; l < 32; l++) {
        if (!(in >> l & 1)) continue;
        unsigned long long r = 0;
        const unsigned m = W.mask[l], part = in & m;
        if (W.op <= ULC_EMU_SHFL_XOR) {
            const long long wd = W.width, lo = l & ~(wd - 1), hi = lo + wd - 1, a = W.arg[l];
            long long j;
            bool ok;
            switch (W.op) {
            case ULC_EMU_SHFL_IDX: j = lo + (a & (wd - 1)); ok = true; break;
            case ULC_EMU_SHFL_UP: j = l - a; ok = j >= lo; break;
            case ULC_EMU_SHFL_DOWN: j = l + a; ok = j <= hi; break;
            default: j = (long long)((unsigned)l ^ (unsigned)a); ok = j <= hi; break;
            }
            /* a source lane out of the segment, that does not exist or has returned: own value */
            r = (ok && j >= 0 && j < 32 && (in >> j & 1)) ? W.val[j] : W.val[l];
        } else if (W.op == ULC_EMU_VOTE_BALLOT) {
            r = pred & m;
        } else if (W.op == ULC_EMU_VOTE_ANY) {
            r = (pred & m) != 0;
        } else if (W.op == ULC_EMU_VOTE_ALL) {
            r = (part & ~pred) == 0;
        } else if (W.op == ULC_EMU_WARP_ACTIVE) {
            r = in;
        } else if (W.op >= ULC_EMU_RED_ADD) {
            bool first = true;
            unsigned acc = 0;
            for (int j = 0; j < 32; j++) {
                if (!(part >> j & 1)) continue;
                unsigned v = (unsigned)W.val[j];
                if (first) acc = v;
                else switch (W.op) {
                    case ULC_EMU_RED_ADD: acc += v; break;
                    case ULC_EMU_RED_MIN_I: acc = (int)v < (int)acc ? v : acc; break;
                    case ULC_EMU_RED_MAX_I: acc = (int)v > (int)acc ? v : acc; break;
                    case ULC_EMU_RED_MIN_U: acc = v < acc ? v : acc; break;
                    case ULC_EMU_RED_MAX_U: acc = v > acc ? v : acc; break;
                    case ULC_EMU_RED_AND: acc &= v; break;
                    case ULC_EMU_RED_OR: acc |= v; break;
                    default: acc ^= v; break;
                    }
                first = false;
            }
            r = acc;
        }
        s->result[base + l] = r;
        if (base + l != self) wake(s, base + l);
    }
    W.arrived = 0;
    W.waiting = 0;
}

void thread_exit(Sched *s, int t) {
    s->state[t] = T_DONE;
    s->done++;
    Warp &W = s->warp[t >> 5];
    W.live--;
    if (W.arrived && W.arrived == W.live) warp_release(s, t >> 5, -1);
}

void run_block(Sched *s) {
    s->next = s->done = 0;
    s->bar_arrived = 0;
    s->rq_head = s->rq_len = 0;
    memset(s->state, T_READY, (size_t)s->n);
    for (int w = 0; w < (s->n + 31) / 32; w++) {
        Warp &W = s->warp[w];
        W.live = s->n - w * 32 < 32 ? s->n - w * 32 : 32;
        W.arrived = 0;
        W.waiting = 0;
    }
    /* fibers pass control among themselves; the scheduler gets it back when none can run */
    while (s->done < s->n) {
        Fiber *f = pick(s);
        if (!f) deadlock(s);
        go(s, nullptr, f);
    }
}

} // namespace

int ulc_emu_block_op(int op, int pred) {
    Sched *s = in_kernel(bar_name(op));
    const int t = s->cur->thread;
    if (s->bar_arrived == 0) {
        s->bar_op = op;
        s->bar_count = 0;
    } else if (s->bar_op != op) {
        diverged(s, t, bar_name(op), bar_name(s->bar_op), s->bar_arrived);
    }
    s->bar_count += pred != 0;
    if (++s->bar_arrived == s->n) { /* the last one: release the others and go on */
        const int c = s->bar_count;
        const int r = op == ULC_EMU_BAR_COUNT ? c
                      : op == ULC_EMU_BAR_AND ? c == s->n
                      : op == ULC_EMU_BAR_OR  ? c > 0
                                              : 0;
        for (int i = 0; i < s->bar_arrived - 1; i++) {
            s->result[s->bar_list[i]] = (unsigned long long)r;
            wake(s, s->bar_list[i]);
        }
        s->bar_arrived = 0;
        return r;
    }
    s->bar_list[s->bar_arrived - 1] = t;
    s->state[t] = T_BAR;
    suspend(s, t);
    return (int)s->result[t];
}

unsigned long long ulc_emu_warp_op(int op, unsigned mask, unsigned long long v, int arg,
                                   int width) {
    Sched *s = in_kernel(op_name(op));
    const int t = s->cur->thread, w = t >> 5, lane = t & 31;
    if (width < 1 || width > 32 || (width & (width - 1))) {
        fprintf(stderr, "ulc CUDA emulator: %s with width %d (a power of 2 up to 32)\n",
                op_name(op), width);
        abort();
    }
    Warp &W = s->warp[w];
    if (W.arrived == 0) {
        W.op = op;
        W.width = width;
    } else if (W.op != op || W.width != width) {
        diverged(s, t, op_name(op), op_name(W.op), W.arrived);
    }
    W.val[lane] = v;
    W.arg[lane] = arg;
    W.mask[lane] = mask;
    W.waiting |= 1u << lane;
    if (++W.arrived == W.live) {
        warp_release(s, w, t);
        return s->result[t];
    }
    s->state[t] = T_WARP;
    suspend(s, t);
    return s->result[t];
}

void *ulc_emu_dyn_smem(void) {
    Sched *s = g_s;
    return s && s->running ? s->smem : nullptr;
}

void ulc_emu_launch_fn(dim3 grid, dim3 block, size_t dyn_smem, void (*fn)(void *), void *arg) {
    const unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
    if (nt == 0 || nt > kMaxThreads || block.x > 1024 || block.y > 1024 || block.z > 64 ||
        grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 0x7fffffffu || grid.y > 65535 ||
        grid.z > 65535) {
        g_last = cudaErrorInvalidConfiguration;
        return;
    }
    if (dyn_smem > kSmemOptin || (dyn_smem > kSmemDefault && dyn_smem > g_optin.load())) {
        g_last = cudaErrorInvalidValue; /* above 48 KiB needs cudaFuncSetAttribute first */
        return;
    }
    Sched *s = sched();
    if (s->running) die("a kernel launched a kernel (no dynamic parallelism)");
    if (s->smem_cap < dyn_smem || !s->smem) {
        size_t cap = dyn_smem < 4096 ? 4096 : (dyn_smem + 4095) & ~(size_t)4095;
        free(s->smem);
        s->smem = static_cast<unsigned char *>(aligned_alloc(256, cap));
        if (!s->smem) die("out of host memory for dynamic shared memory");
        s->smem_cap = cap;
    }
    s->fn = fn;
    s->arg = arg;
    s->n = (int)nt;
    for (int t = 0; t < s->n; t++)
        s->coord[t] = uint3{t % block.x, t / block.x % block.y, t / (block.x * block.y)};
    gridDim = grid;
    blockDim = block;
    DevWork w; /* device memory is open to the kernel's threads */
    s->running = true;
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx = uint3{x, y, z};
                memset(s->smem, 0xA5, dyn_smem); /* uninitialised shared memory shows */
                run_block(s);
            }
    s->running = false;
    threadIdx = blockIdx = uint3{0, 0, 0};
}

/* ---- the mini cuBLAS ------------------------------------------------------------------------- */

namespace {

struct Blas {
    unsigned magic;
    cudaStream_t stream;
    int mode;
    void *ws;
    size_t ws_bytes;
};
constexpr unsigned kBlasMagic = 0x424c4153u;
enum { BLAS_OK = 0, BLAS_NOT_INITIALIZED = 1, BLAS_INVALID_VALUE = 7, BLAS_EXECUTION_FAILED = 13 };

Blas *blas(void *h) {
    Blas *b = static_cast<Blas *>(h);
    return b && b->magic == kBlasMagic ? b : nullptr;
}

/* An operand's elements over every batch lie in one cudaMalloc'd block. */
bool operand_ok(const char *name, const float *p, long long ld, long long rows, long long cols,
                long long stride, int batch) {
    long long first = 0, last = (cols - 1) * ld + rows - 1;
    if (batch > 1) {
        if (stride < 0) first += (batch - 1) * stride;
        else last += (batch - 1) * stride;
    }
    const float *lo = p + first;
    size_t bytes = (size_t)(last - first + 1) * sizeof(float);
    if (p && dev_range(lo, bytes)) return true;
    fprintf(stderr,
            "ulc CUDA emulator: sgemm operand %s [%p, +%zu bytes) is not inside one cudaMalloc "
            "block\n",
            name, (const void *)lo, bytes);
    return false;
}

int gemm_check(int ta, int tb, int m, int n, int k, int lda, int ldb, int ldc) {
    if (ta < 0 || ta > 2 || tb < 0 || tb > 2 || m < 0 || n < 0 || k < 0) return BLAS_INVALID_VALUE;
    const int arows = ta ? k : m, brows = tb ? n : k;
    if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1))
        return BLAS_INVALID_VALUE;
    return BLAS_OK;
}

/* C = alpha op(A) op(B) + beta C, column-major; each C(i,j) sums p = 0..k-1 in order. */
void gemm(int ta, int tb, int m, int n, int k, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    thread_local std::vector<float> acc, at;
    if (k == 0 || alpha == 0.0f) { /* A and B are not read */
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                float &c = C[i + (size_t)j * ldc];
                c = beta == 0.0f ? 0.0f : beta * c;
            }
        return;
    }
    if (ta) { /* op(A) = A^T: make it a column-major m x k copy so columns are contiguous */
        at.resize((size_t)m * k);
        for (int i = 0; i < m; i++)
            for (int p = 0; p < k; p++) at[i + (size_t)p * m] = A[p + (size_t)i * lda];
        A = at.data();
        lda = m;
    }
    acc.resize((size_t)m);
    for (int j = 0; j < n; j++) {
        float *a = acc.data();
        for (int i = 0; i < m; i++) a[i] = 0.0f;
        for (int p = 0; p < k; p++) {
            const float b = tb ? B[j + (size_t)p * ldb] : B[p + (size_t)j * ldb];
            const float *col = A + (size_t)p * lda;
            for (int i = 0; i < m; i++) a[i] += col[i] * b;
        }
        float *c = C + (size_t)j * ldc;
        for (int i = 0; i < m; i++) c[i] = alpha * a[i] + (beta == 0.0f ? 0.0f : beta * c[i]);
    }
}

} // namespace

int ulc_emu_blas_create(void **h) {
    if (!h) return BLAS_INVALID_VALUE;
    *h = new Blas{kBlasMagic, nullptr, 0, nullptr, 0};
    return BLAS_OK;
}

int ulc_emu_blas_destroy(void *h) {
    Blas *b = blas(h);
    if (!b) return BLAS_NOT_INITIALIZED;
    b->magic = 0;
    delete b;
    return BLAS_OK;
}

int ulc_emu_blas_set_stream(void *h, cudaStream_t s) {
    Blas *b = blas(h);
    if (!b) return BLAS_NOT_INITIALIZED;
    b->stream = s;
    return BLAS_OK;
}

int ulc_emu_blas_set_math_mode(void *h, int mode) {
    Blas *b = blas(h);
    if (!b) return BLAS_NOT_INITIALIZED;
    b->mode = mode; /* TF32 (3) computes in float32 here */
    return BLAS_OK;
}

int ulc_emu_blas_set_workspace(void *h, void *ws, size_t n) {
    Blas *b = blas(h);
    if (!b) return BLAS_NOT_INITIALIZED;
    b->ws = ws;
    b->ws_bytes = n;
    return BLAS_OK;
}

int ulc_emu_sgemm(void *h, int ta, int tb, int m, int n, int k, const float *alpha, const float *A,
                  int lda, const float *B, int ldb, const float *beta, float *C, int ldc) {
    return ulc_emu_sgemm_batched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0,
                                 1);
}

int ulc_emu_sgemm_batched(void *h, int ta, int tb, int m, int n, int k, const float *alpha,
                          const float *A, int lda, long long sa, const float *B, int ldb,
                          long long sb, const float *beta, float *C, int ldc, long long sc,
                          int batch) {
    if (!blas(h)) return BLAS_NOT_INITIALIZED;
    int st = gemm_check(ta, tb, m, n, k, lda, ldb, ldc);
    if (st != BLAS_OK || batch < 0 || !alpha || !beta) return BLAS_INVALID_VALUE;
    if (m == 0 || n == 0 || batch == 0) return BLAS_OK;
    const bool reads_ab = k > 0 && *alpha != 0.0f;
    if (!operand_ok("C", C, ldc, m, n, sc, batch) ||
        (reads_ab && (!operand_ok("A", A, lda, ta ? k : m, ta ? m : k, sa, batch) ||
                      !operand_ok("B", B, ldb, tb ? n : k, tb ? k : n, sb, batch))))
        return BLAS_EXECUTION_FAILED;
    const float al = *alpha, be = *beta; /* host scalars (cuBLAS's host pointer mode) */
    DevWork w;
    for (int i = 0; i < batch; i++)
        gemm(ta, tb, m, n, k, al, A + i * sa, lda, B + i * sb, ldb, be, C + i * sc, ldc);
    return BLAS_OK;
}
