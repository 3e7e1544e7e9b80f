/* W1 for raw C on libuv: N operations in sequence, each one loop iteration:
 * uv_idle_start, the idle callback stops it and starts the next (no
 * coroutine: the practical floor of a loop round trip). sched: unsupported
 * (a C callback is a plain call). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

static long n, i;
static uv_idle_t idle;

static void on_idle(uv_idle_t *h) {
  uv_idle_stop(h);
  if (++i < n) uv_idle_start(h, on_idle);
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  const char *variant = argc > 1 ? argv[1] : "loop";
  n = getenv("N") ? atol(getenv("N")) : 1000000;
  if (strcmp(variant, "loop") != 0) {
    printf("UNSUPPORTED workload=w1 variant=%s reason=no-scheduler\n", variant);
    return 0;
  }
  uv_idle_init(uv_default_loop(), &idle);
  double t0 = now();
  uv_idle_start(&idle, on_idle);
  uv_run(uv_default_loop(), UV_RUN_DEFAULT);
  double secs = now() - t0;
  printf("RESULT workload=w1 variant=loop n=%ld secs=%.6f ops_per_s=%.1f\n", n, secs, n / secs);
  return 0;
}
