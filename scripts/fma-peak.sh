#!/usr/bin/env bash
# This core's clock and f32 FMA peak, measured (a KVM guest's /proc/cpuinfo shows the nominal
# clock only): a chain of dependent integer adds runs one a cycle, so adds per second is the
# clock; 12 independent chains of 512-bit (or, without AVX-512, 256-bit) FMAs give the
# FMA throughput one thread reaches. The "fraction of FMA peak" figures in
# docs/CPU-EFFICIENCY.md divide by the second number. Needs gcc.
set -euo pipefail
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
cat >"$DIR/peak.c" <<'C'
#include <stdio.h>
#include <time.h>
#include <immintrin.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
  long n = 2000000000L, x = 0;
  double t0 = now();
  for (long i = 0; i < n; i += 8)
    __asm__ volatile("add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\t"
                     "add $1,%0\n\tadd $1,%0\n\tadd $1,%0\n\tadd $1,%0" : "+r"(x));
  double ghz = n / (now() - t0) / 1e9;
#ifdef __AVX512F__
  typedef __m512 V; const int lanes = 16;
#define SET _mm512_set1_ps
#define FMA _mm512_fmadd_ps
#else
  typedef __m256 V; const int lanes = 8;
#define SET _mm256_set1_ps
#define FMA _mm256_fmadd_ps
#endif
  V a[12], b = SET(0.999999f), c = SET(1e-7f);
  for (int k = 0; k < 12; k++) a[k] = SET(1.0f + k * 1e-3f);
  long m = 200000000L;
  t0 = now();
  for (long i = 0; i < m; i++)
    for (int k = 0; k < 12; k++) a[k] = FMA(a[k], b, c);
  double gflops = (double)m * 12 * lanes * 2 / (now() - t0) / 1e9;
  float s = 0; float out[16];
  for (int k = 0; k < 12; k++) { _mm_storeu_ps(out, *(__m128 *)&a[k]); s += out[0]; }
  printf("clock %.2f GHz (dependent adds); %d-bit FMA peak %.1f GFLOP/s per thread = %.1f FLOP/cycle (checksum %g)\n",
         ghz, lanes * 32, gflops, gflops / ghz, s);
  return 0;
}
C
if grep -qw avx512f /proc/cpuinfo; then ISA=-mavx512f; else ISA="-mavx2 -mfma"; fi
gcc -O3 $ISA -o "$DIR/peak" "$DIR/peak.c"
for _ in 1 2 3; do "$DIR/peak"; done
