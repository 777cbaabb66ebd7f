/* cli.h — pieces shared by the ulc command-line tool's source files. */
#ifndef ULC_TOOLS_CLI_H
#define ULC_TOOLS_CLI_H

#include <signal.h>

#include "common/status.h"

/* Exit codes (docs/cli.md). */
enum {
    ULC_EXIT_OK = 0,
    ULC_EXIT_USAGE = 1,       /* bad command line */
    ULC_EXIT_INPUT = 2,       /* the input is malformed or invalid */
    ULC_EXIT_IO = 3,          /* a file could not be read or written */
    ULC_EXIT_UNSUPPORTED = 4, /* valid input that ulc does not handle */
    ULC_EXIT_NOMEM = 5,
    ULC_EXIT_GATE = 10,       /* forget: the result failed a gate of the spec (docs/spec.md) */
    ULC_EXIT_MISMATCH = 11,   /* verify: a hash did not match its record (docs/audit.md) */
    ULC_EXIT_INTERNAL = 70,
    ULC_EXIT_INTERRUPTED = 130
};

int ulc_cli_exit_code(ulc_status s);

/* Ctrl-C while a job trains (tools/ulc.c): SIGINT/SIGTERM set ulc_cli_stop, which the job polls
 * (it stops after the step), while a phase runs; otherwise they end the process and the
 * temporaries are cleaned up. ulc_cli_phase is the jobs' phase callback (arg: a zeroed
 * ulc_cli_handlers). */
extern volatile sig_atomic_t ulc_cli_stop;
typedef struct ulc_cli_handlers {
    void (*prev_int)(int), (*prev_term)(int);
} ulc_cli_handlers;
void ulc_cli_phase(void *arg, const char *name, int begin);
/* Prints "ulc: error: <message>" to stderr and returns the exit code for ctx's status. */
int ulc_cli_report(const ulc_ctx *ctx);
/* A command's context: notices to stderr, and the settings every command takes
 * (--allow-external-outside, taken out of argv by main). */
void ulc_cli_ctx_init(ulc_ctx *ctx);

/* Prints "ulc: error: <message>\n(see 'ulc --help')" and returns ULC_EXIT_USAGE. */
int ulc_cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* `ulc run`, `ulc eval`, `ulc ops` (tools/run.c; arguments after the command). */
int ulc_cli_run(int argc, char **argv);
int ulc_cli_eval(int argc, char **argv);
int ulc_cli_ops(int argc, char **argv);


/* `ulc train MODEL --data D -o OUT ...` (tools/train.c). */
int ulc_cli_train(int argc, char **argv);
/* `ulc grad MODEL --input FEEDS -o GRADS` (tools/grad.c). */
int ulc_cli_grad(int argc, char **argv);

/* `ulc IN --forget SPEC.json -o OUT ...` and `ulc forget IN ...` (tools/forget.c; arguments
 * after "forget", or all of them after the program name: IN among them). */
int ulc_cli_forget(int argc, char **argv);

/* `ulc tokenize TOKENIZER (--text S | --file F) ...` (tools/tokenize.c). */
int ulc_cli_tokenize(int argc, char **argv);

/* `ulc verify OUT [--report R] ...` (tools/verify.c; arguments after "verify"). */
int ulc_cli_verify(int argc, char **argv);

/* `ulc merge BASE --lora ADAPTER[:W] ... -o OUT` (arguments after "merge"). */
int ulc_cli_merge(int argc, char **argv);

#endif
