/*
 * ulc.c — the command-line tool, and the only place in ulc that exits.
 *
 *   ulc inspect MODEL [--json]
 *   ulc convert IN -o OUT [--external-data] [--in-place]
 *   ulc run MODEL --input IN.safetensors -o OUT.safetensors | ulc eval MODEL --data D | ulc ops
 *   ulc IN --forget SPEC.json -o OUT   (tools/forget.c)
 *   ulc verify OUT [--report R.json]   (tools/verify.c)
 *   ulc --help | --version
 */
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/file.h"
#include "io/model.h"
#include "jobs/convert.h"
#include "jobs/inspect.h"
#include "passes/pass.h"
#include "runtime/runtime.h"
#include "tools/cli.h"

static const char *k_usage =
    "usage: ulc <command> [options]\n"
    "\n"
    "commands:\n"
    "  inspect MODEL [--json]     producer, opsets, inputs/outputs, op histogram, parameters,\n"
    "                             external data files\n"
    "  convert IN -o OUT          read IN and write it to OUT in the format OUT's name asks for\n"
    "                             (.onnx, .safetensors, or a directory: model.safetensors, and\n"
    "                             config.json when IN is a Hugging Face architecture)\n"
    "      --external-data        write weights to OUT.data (4 KiB-aligned) instead of inline\n"
    "      --with-past            write the decoder with a KV cache (past_key_values.* in,\n"
    "                             present.* out; a GPT-2 from a Hugging Face checkpoint; ONNX)\n"
    "      --in-place             allow OUT to be IN itself (or IN's external data)\n"
    "      --print-ir             print the IR to stdout after import\n"
    "      --passes PIPELINE      run passes before writing, e.g. \"specialize{batch=1},cleanup\"\n"
    "                             (specialize{batch=,dims=NAME:N|..,shapes=IN:AxB|..,limit=},\n"
    "                             cleanup{limit=BYTES}, lora-inject{targets=,include=,exclude=,\n"
    "                             rank=,alpha=,rslora=,seed=,init=}, lora-merge)\n"
    "      --verify-each          verify the graph after every pass\n"
    "      --print-ir-after=PASS  print the IR after PASS (or 'all')\n"
    "      --emit-adapter DIR     write the LoRA adapters lora-inject added (merged or not) to\n"
    "                             DIR as a PEFT adapter (adapter_config.json and\n"
    "                             adapter_model.safetensors; never overwrites)\n"
    "  merge BASE --lora ADAPTER[:WEIGHT] [--lora ...] -o OUT\n"
    "                             bake PEFT LoRA adapters into BASE (safetensors file, HF\n"
    "                             checkpoint directory, or ONNX), written in BASE's format\n"
    "      --unmerge              subtract the adapters instead\n"
    "      --untie-embeddings     let an adapter change one side of tied embeddings\n"
    "      --threads N            threads for the low-rank products (default: every core)\n"
    "      --in-place, -q         as for convert; -q prints no per-tensor report\n"
    "  run MODEL --input IN.safetensors -o OUT.safetensors\n"
    "                             run MODEL on the CPU runtime: IN holds a tensor per graph\n"
    "                             input (by name), OUT receives the graph outputs by name\n"
    "      --threads N            threads (default: every core)\n"
    "      --repeat N             run N times; print the first and median run times\n"
    "      --profile              print the time per op type and the slowest nodes\n"
    "  eval MODEL --data DATA.safetensors [--json]\n"
    "                             accuracy, per-class accuracy and confusion matrix of a\n"
    "                             classifier on DATA ('input' [N,...] and 'label' int64 [N])\n"
    "      --batch N              rows per run (default 64); --threads N as for run\n"
    "      --input NAME, --output NAME   which model input/output (default: the only input,\n"
    "                             the first output)\n"
    "      --clip PROMPTS.json    a CLIP model scored zero-shot: the file's classes and\n"
    "                             templates (a spec's \"clip\" key, or that object alone);\n"
    "                             --tokenizer T when MODEL is not its directory\n"
    "      --forget SPEC.json     unlearning metrics over the spec's splits (docs/metrics.md);\n"
    "                             with --original O, --reference R, --relearn N [--relearn-lr X]\n"
    "  ops [--backend cpu] [--grad]   the ops the runtime runs (--grad: autodiff can differentiate)\n"
    "  train MODEL --data D -o OUT   train (docs/cli.md: --before/--after pipelines, --loss, ...)\n"
    "  train MODEL --data D -o OUT --passes PIPELINE --forget-classes C[,C...]|--forget-indices F\n"
    "                             unlearn with passes, one method among them, e.g.\n"
    "                             \"lora-inject{placement=rfa,alpha=32},rfa{gamma=0.5},lora-merge\"\n"
    "  grad MODEL --input FEEDS -o GRADS   gradients of an output (checks backward rules)\n"
    "  tokenize TOKENIZER (--text S | --file F)\n"
    "                             token ids of texts (JSON Lines) with a tokenizer.json or a\n"
    "                             vocab.json + merges.txt directory (docs/cli.md)\n"
    "      --decode [--skip-special]  ids (a JSON list, or JSONL \"ids\") back to text\n"
    "      --add-special          the post-processor's tokens (CLIP's start/end)\n"
    "      --max-length N         rows of N ids and their mask; --overflow error|truncate|\n"
    "                             windows, --stride K, --pad (N wide), --pad-id ID\n"
    "      -o OUT, --time         write OUT; print the encode time (stderr)\n"
    "\n"
    "unlearning:\n"
    "  IN --forget SPEC.json -o OUT   (also: forget IN --forget SPEC.json -o OUT)\n"
    "                             make IN forget what SPEC names (classes or train rows) with\n"
    "                             the method it names (rfa: LoRA adapters trained by residual\n"
    "                             feature alignment, merged back); OUT has IN's format, inputs,\n"
    "                             outputs and nodes. Prints accuracy before/after on the forget\n"
    "                             and retain splits and writes the spec's JSON report (docs/spec.md)\n"
    "      --report PATH          write the report here (default: the spec's \"report\")\n"
    "      --threads N            threads (default: every core); same seed and N, same bytes\n"
    "      -q                     no progress bar\n"
    "      --profile              time per op type of the training session (stderr)\n"
    "      --junit PATH           write the spec's gates as JUnit XML (docs/ci.md)\n"
    "      --github-annotations   print a GitHub Actions ::error line per failed gate\n"
    "  verify OUT [--report R.json]   check an unlearned model against the request history it\n"
    "                             carries and its report: the sha256 of its weights, of the\n"
    "                             input model, spec and data files (docs/audit.md); prints one\n"
    "                             line per item: ok, MISMATCH or not checked\n"
    "      --input IN, --spec SPEC, --train D, --test T   check these files (default: the\n"
    "                             report's paths)\n"
    "\n"
    "options:\n"
    "  --allow-external-outside   (every command that reads a model) ONNX external data may\n"
    "                             resolve outside the model's folder (symlinks; docs/cli.md)\n"
    "  -h, --help                 this text\n"
    "  --version                  ulc's version and the backends built in (cpu, cuda)\n"
    "  --device cpu|cuda[:N]      (every command) where sessions run: the CPU (default) or a\n"
    "                             CUDA GPU; no GPU visible: exit 2 with why\n"
    "  --precision fp32|tf32|bf16 float32 products (default; on cuda TF32 off, as the CPU);\n"
    "                             tf32: cuda's TF32 tensor-core products; bf16: on the CPU,\n"
    "                             linear layers in bfloat16 with float32 sums, where the CPU\n"
    "                             has AVX512_BF16 or AMX (docs/cli.md, \"Precision\")\n"
    "\n"
    "formats: ONNX (.onnx); safetensors (.safetensors, a sharded checkpoint's index .json, or a\n"
    "directory holding either). Exit codes: 0 ok, 1 usage, 2 invalid input, 3 I/O error,\n"
    "4 unsupported, 5 out of memory, 10 a gate failed (forget), 11 a hash did not match\n"
    "(verify), 70 internal error, 130 interrupted (docs/cli.md).\n";

int ulc_cli_exit_code(ulc_status s) {
    switch (s) {
    case ULC_OK: return ULC_EXIT_OK;
    case ULC_ERR_INVALID_ARG: return ULC_EXIT_USAGE;
    case ULC_ERR_PARSE:
    case ULC_ERR_INVALID: return ULC_EXIT_INPUT;
    case ULC_ERR_IO: return ULC_EXIT_IO;
    case ULC_ERR_UNSUPPORTED: return ULC_EXIT_UNSUPPORTED;
    case ULC_ERR_NOMEM: return ULC_EXIT_NOMEM;
    case ULC_ERR_INTERRUPTED: return ULC_EXIT_INTERRUPTED;
    case ULC_ERR_INTERNAL: return ULC_EXIT_INTERNAL;
    }
    return ULC_EXIT_INTERNAL;
}

static int g_allow_external_outside; /* --allow-external-outside, for every command */

void ulc_cli_ctx_init(ulc_ctx *ctx) {
    ulc_ctx_init(ctx);
    ctx->notes = stderr;
    ctx->allow_external_outside = g_allow_external_outside;
}

int ulc_cli_report(const ulc_ctx *ctx) {
    fprintf(stderr, "ulc: error: %s\n", ulc_ctx_message(ctx));
    return ulc_cli_exit_code(ctx->status);
}

int ulc_cli_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("ulc: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(see 'ulc --help')\n", stderr);
    return ULC_EXIT_USAGE;
}

volatile sig_atomic_t ulc_cli_stop;

static void on_stop(int sig) {
    (void)sig;
    ulc_cli_stop = 1;
}

void ulc_cli_phase(void *arg, const char *name, int begin) {
    ulc_cli_handlers *h = arg;
    (void)name;
    if (begin) {
        h->prev_int = signal(SIGINT, on_stop);
        h->prev_term = signal(SIGTERM, on_stop);
    } else {
        signal(SIGINT, h->prev_int);
        signal(SIGTERM, h->prev_term);
    }
}

static void on_signal(int sig) {
    ulc_outfile_cleanup_all(); /* async-signal-safe: unlink only */
    signal(sig, SIG_DFL);
    raise(sig);
}

static int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    int json = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (argv[i][0] == '-' && argv[i][1]) return ulc_cli_usage_error("inspect: unknown option '%s'", argv[i]);
        else if (path) return ulc_cli_usage_error("inspect: more than one model given ('%s')", argv[i]);
        else path = argv[i];
    }
    if (!path) return ulc_cli_usage_error("inspect: no model given");
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    if (ulc_inspect_file(path, json, stdout, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}

static int cmd_convert(int argc, char **argv) {
    ulc_convert_job j = {0};
    int print_ir = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--passes") == 0) {
            if (i + 1 >= argc) return ulc_cli_usage_error("convert: --passes needs a pipeline");
            j.passes = argv[++i];
        } else if (strcmp(argv[i], "--emit-adapter") == 0) {
            if (i + 1 >= argc) return ulc_cli_usage_error("convert: --emit-adapter needs a directory");
            j.adapter_dir = argv[++i];
        } else if (strcmp(argv[i], "--verify-each") == 0) {
            j.popts.verify_each = 1;
        } else if (strncmp(argv[i], "--print-ir-after=", 17) == 0) {
            j.popts.print_ir_after = argv[i] + 17;
        } else if (strcmp(argv[i], "--print-ir-after") == 0) {
            if (i + 1 >= argc) return ulc_cli_usage_error("convert: --print-ir-after needs a pass name");
            j.popts.print_ir_after = argv[++i];
        } else if (strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) {
            if (i + 1 >= argc) return ulc_cli_usage_error("convert: %s needs a path", argv[i]);
            j.out = argv[++i];
        } else if (strcmp(argv[i], "--external-data") == 0) {
            j.save.external_data = 1;
        } else if (strcmp(argv[i], "--in-place") == 0) {
            j.save.allow_overwrite_input = 1;
        } else if (strcmp(argv[i], "--print-ir") == 0) {
            print_ir = 1;
        } else if (strcmp(argv[i], "--with-past") == 0) {
            j.with_past = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            return ulc_cli_usage_error("convert: unknown option '%s'", argv[i]);
        } else if (j.in) {
            return ulc_cli_usage_error("convert: more than one input given ('%s')", argv[i]);
        } else {
            j.in = argv[i];
        }
    }
    if (!j.in) return ulc_cli_usage_error("convert: no input model given");
    if (!j.out) return ulc_cli_usage_error("convert: no output given (-o OUT)");
    /* OUT's name picks the format: .onnx, .safetensors, or a directory (an existing one, or a
     * name ending in '/') that receives model.safetensors. */
    ulc_ctx ctx;
    ulc_cli_ctx_init(&ctx);
    if (ulc_io_output_format(j.out, &j.out_format, &ctx) != ULC_OK)
        return ulc_cli_usage_error("convert: %s", ctx.msg);
    if (j.with_past && j.out_format != ULC_IO_ONNX)
        return ulc_cli_usage_error("convert: --with-past writes ONNX only");
    if (j.save.external_data && j.out_format != ULC_IO_ONNX)
        return ulc_cli_usage_error("convert: --external-data applies to ONNX output only");
    if ((j.popts.verify_each || j.popts.print_ir_after) && !j.passes)
        return ulc_cli_usage_error("convert: --verify-each and --print-ir-after need --passes");
    const char *after = j.popts.print_ir_after;
    if (after && strcmp(after, "all") != 0 && !ulc_pass_find(after))
        return ulc_cli_usage_error("convert: --print-ir-after: unknown pass '%s'", after);
    j.popts.print_to = stdout;
    j.print_ir = print_ir ? stdout : NULL;
    if (ulc_convert_files(&j, &ctx) != ULC_OK) return ulc_cli_report(&ctx);
    return ULC_EXIT_OK;
}

/* libgomp reads its wait policy once, while the program loads, and by default a thread waiting
 * for work spins 300,000 times (milliseconds) before it sleeps: on a machine other work shares,
 * those cycles are the other work's. A command that computes starts over with GOMP_SPINCOUNT at
 * 10,000 (about half a millisecond here: enough to bridge the gap between two steps of a run,
 * after which a waiting thread sleeps) unless the environment already chose (OMP_WAIT_POLICY or
 * GOMP_SPINCOUNT). Sleeping at once (OMP_WAIT_POLICY=PASSIVE) costs a futex wake-up per step:
 * the digits demo takes 1.4 s on two threads that way against 0.9 s (docs/benchmarks.md). */
static void start_over_with_short_spins(char **argv) {
    if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
    if (setenv("GOMP_SPINCOUNT", "10000", 1) != 0) return;
    execv("/proc/self/exe", argv); /* returns only when it failed: go on as we are */
}

static int computes(int argc, char **argv) {
    static const char *const cmds[] = {"run", "eval", "train", "grad", "forget", "merge"};
    int c = 1; /* the command: past the global options (--device X, --precision X, ...) */
    while (c < argc && (strcmp(argv[c], "--device") == 0 || strcmp(argv[c], "--precision") == 0 ||
                        strcmp(argv[c], "--allow-external-outside") == 0))
        c += strcmp(argv[c], "--allow-external-outside") == 0 ? 1 : 2;
    for (size_t i = 0; c < argc && i < sizeof cmds / sizeof *cmds; i++)
        if (strcmp(argv[c], cmds[i]) == 0) return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--forget") == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && computes(argc, argv)) start_over_with_short_spins(argv);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);
    if (argc < 2) {
        fputs(k_usage, stderr);
        return ULC_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "ops") != 0) { /* every command that reads a model takes it */
        int k = 1;
        for (int i = 1; i < argc; i++) {
            if (strcmp(argv[i], "--allow-external-outside") == 0) g_allow_external_outside = 1;
            else argv[k++] = argv[i];
        }
        argv[k] = NULL;
        argc = k;
        if (argc < 2) return ulc_cli_usage_error("no command given");
        cmd = argv[1];
    }
    /* --device / --precision: every command's sessions (options anywhere on the line) */
    const char *device = NULL;
    int prec = 0;
    {
        const char *precision = NULL;
        int k = 1;
        for (int i = 1; i < argc; i++) {
            if ((strcmp(argv[i], "--device") == 0 || strcmp(argv[i], "--precision") == 0) && i + 1 >= argc)
                return ulc_cli_usage_error("%s needs a value", argv[i]);
            if (strcmp(argv[i], "--device") == 0) device = argv[++i];
            else if (strcmp(argv[i], "--precision") == 0) precision = argv[++i];
            else argv[k++] = argv[i];
        }
        argv[k] = NULL;
        argc = k;
        if (precision) {
            if (strcmp(precision, "fp32") == 0 || strcmp(precision, "float32") == 0) prec = 0;
            else if (strcmp(precision, "tf32") == 0) prec = ULC_PRECISION_TF32;
            else if (strcmp(precision, "bf16") == 0 || strcmp(precision, "bfloat16") == 0) prec = ULC_PRECISION_BF16;
            else return ulc_cli_usage_error("--precision %s: expected fp32, tf32 or bf16", precision);
            if (prec == ULC_PRECISION_TF32 && (!device || strncmp(device, "cuda", 4) != 0))
                return ulc_cli_usage_error("--precision tf32 applies to --device cuda only");
            if (prec != ULC_PRECISION_FP32 && !device) device = "cpu"; /* checked where it runs */
        }
        if (argc < 2) return ulc_cli_usage_error("no command given");
        cmd = argv[1];
    }
    if (strcmp(cmd, "-h") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
        fputs(k_usage, stdout);
        return ULC_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("ulc %s (backends: %s)\n", ULC_VERSION, ulc_backend_names());
        return ULC_EXIT_OK;
    }
    if (device) { /* the device is opened once here: where it is missing, nothing else runs */
        ulc_ctx ctx;
        ulc_ctx_init(&ctx);
        ulc_status st = ulc_runtime_set_default_device(device, prec, &ctx);
        if (st != ULC_OK) {
            fprintf(stderr, "ulc: error: %s\n", ulc_ctx_message(&ctx));
            ulc_ctx_clear(&ctx);
            /* exit 2: the device asked for is not there (docs/cli.md, "Devices") */
            return st == ULC_ERR_UNSUPPORTED ? ULC_EXIT_INPUT : ulc_cli_exit_code(st);
        }
        ulc_ctx_clear(&ctx);
    }
    if (strcmp(cmd, "inspect") == 0) return cmd_inspect(argc - 2, argv + 2);
    if (strcmp(cmd, "convert") == 0) return cmd_convert(argc - 2, argv + 2);
    if (strcmp(cmd, "merge") == 0) return ulc_cli_merge(argc - 2, argv + 2);
    if (strcmp(cmd, "run") == 0) return ulc_cli_run(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0) return ulc_cli_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "ops") == 0) return ulc_cli_ops(argc - 2, argv + 2);
    if (strcmp(cmd, "train") == 0) return ulc_cli_train(argc - 2, argv + 2);
    if (strcmp(cmd, "grad") == 0) return ulc_cli_grad(argc - 2, argv + 2);
    if (strcmp(cmd, "forget") == 0) return ulc_cli_forget(argc - 2, argv + 2);
    if (strcmp(cmd, "tokenize") == 0) return ulc_cli_tokenize(argc - 2, argv + 2);
    if (strcmp(cmd, "verify") == 0) return ulc_cli_verify(argc - 2, argv + 2);
    /* the main job: `ulc IN --forget SPEC.json -o OUT` (IN is not a command) */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--forget") == 0) return ulc_cli_forget(argc - 1, argv + 1);
    return ulc_cli_usage_error("unknown command '%s'", cmd);
}
