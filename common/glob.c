/* glob.c — '|'-separated fnmatch patterns (see glob.h). */
#include "common/glob.h"

#include <fnmatch.h>
#include <string.h>

int ulc_glob_any(const char *globs, const char *name) {
    for (const char *p = globs; p && *p;) {
        const char *e = strchr(p, '|');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char pat[512];
        if (len < sizeof pat) { /* longer patterns match nothing */
            memcpy(pat, p, len);
            pat[len] = 0;
            if (fnmatch(pat, name, 0) == 0) return 1;
        }
        p = e ? e + 1 : p + len;
    }
    return 0;
}
