/* Test driver for bitnet_kernels objects compiled for another architecture.
 *
 * Usage: kernel_harness IN OUT. IN holds an int64 header
 *   {rows, k, n, nblocks, rows_padded, kp, n_padded}
 * then the packed weights (rows_padded * kp / 4 bytes), float32 scale[rows_padded],
 * float32 x[n][k], float32 norm_weight[k] and the int8 weights q[rows][k]. OUT receives,
 * in this order: uint8 packed[rows_padded * kp / 4] (bitnet_pack of q), int32 pack_status,
 * int8 xq[n_padded][kp], float a[n_padded], int32 xsum[n_padded],
 * int32 gemv[n][rows], int32 gemm[n][rows], float gemv_f[n][rows], float gemm_f[n][rows],
 * float rms[n][k], float softmax[n][k], float silu[n][k], float relu2[n][k].
 * The signatures are those of bitnet_kernels.module.KERNELS.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef void gemm_fn(const void *, const void *, const void *, const void *, const void *, void *,
                     int64_t, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t);
gemm_fn bitnet_gemv_i32, bitnet_gemm_i32, bitnet_gemv_f32, bitnet_gemm_f32;
void bitnet_quantize(const float *, int64_t, int64_t, int8_t *, int64_t, float *, int32_t *,
                     int64_t, int64_t);
void bitnet_rms_norm(const float *, const float *, float *, int64_t, float, int64_t, int64_t);
void bitnet_softmax(const float *, float *, int64_t, int64_t, int64_t);
void bitnet_silu(const float *, float *, int64_t, int64_t);
void bitnet_relu2(const float *, float *, int64_t, int64_t);
int32_t bitnet_pack(const int8_t *, int64_t, int64_t, int64_t, uint8_t *, int64_t, int64_t, int64_t);

static void *take(FILE *f, size_t bytes) {
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p || fread(p, 1, bytes, f) != bytes) { fprintf(stderr, "short input\n"); exit(2); }
    return p;
}

static void put(FILE *f, const void *p, size_t bytes) {
    if (fwrite(p, 1, bytes, f) != bytes) { fprintf(stderr, "short write\n"); exit(3); }
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s IN OUT\n", argv[0]); return 1; }
    FILE *in = fopen(argv[1], "rb"), *out = fopen(argv[2], "wb");
    if (!in || !out) { perror("open"); return 1; }
    int64_t *h = take(in, 7 * sizeof(int64_t));
    int64_t rows = h[0], k = h[1], n = h[2], nblocks = h[3], rp = h[4], kp = h[5], np = h[6];
    uint8_t *w = take(in, (size_t)(rp * kp / 4));
    float *scale = take(in, rp * sizeof(float));
    float *x = take(in, n * k * sizeof(float));
    float *nw = take(in, k * sizeof(float));
    int8_t *q = take(in, (size_t)(rows * k));

    uint8_t *packed = calloc(rp * kp / 4, 1);
    int32_t status = bitnet_pack(q, k, rows, k, packed, nblocks, 0, rp);
    put(out, packed, rp * kp / 4);
    put(out, &status, sizeof status);

    int8_t *xq = calloc(np * kp, 1);
    float *a = malloc(np * sizeof(float));
    int32_t *xsum = calloc(np, sizeof(int32_t));
    for (int64_t t = 0; t < np; t++) a[t] = 1.0f;
    bitnet_quantize(x, k, k, xq, kp, a, xsum, 0, n);
    put(out, xq, np * kp);
    put(out, a, np * sizeof(float));
    put(out, xsum, np * sizeof(int32_t));

    gemm_fn *fns[4] = {bitnet_gemv_i32, bitnet_gemm_i32, bitnet_gemv_f32, bitnet_gemm_f32};
    void *res = malloc(n * rows * 4);
    for (int i = 0; i < 4; i++) {
        /* Two row slices, as two threads would run them. */
        int64_t mid = (rp / 8) * 4;
        fns[i](w, xq, xsum, scale, a, res, nblocks, rows, 0, mid, np, n, rows);
        fns[i](w, xq, xsum, scale, a, res, nblocks, rows, mid, rp, np, n, rows);
        put(out, res, n * rows * 4);
    }
    float *y = malloc(n * k * sizeof(float));
    bitnet_rms_norm(x, nw, y, k, 1e-6f, 0, n);
    put(out, y, n * k * sizeof(float));
    bitnet_softmax(x, y, k, 0, n);
    put(out, y, n * k * sizeof(float));
    bitnet_silu(x, y, 0, n * k);
    put(out, y, n * k * sizeof(float));
    bitnet_relu2(x, y, 0, n * k);
    put(out, y, n * k * sizeof(float));
    return fclose(out) ? 4 : 0;
}
