/* glob.h — name patterns as the CLI and passes take them: fnmatch globs separated by '|'. */
#ifndef ULC_COMMON_GLOB_H
#define ULC_COMMON_GLOB_H

/* 1 if name matches one of the '|'-separated fnmatch patterns in globs (NULL or "": none). */
int ulc_glob_any(const char *globs, const char *name);

#endif
