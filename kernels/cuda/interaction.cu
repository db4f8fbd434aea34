// DLRM dot interaction (compiled at start-up with NVRTC).
//
// Features T_0 = x, T_1 .. T_{F-1} = pooled embeddings, each an `n x d` row-major matrix.
// Output row b (of width d + F(F-1)/2) is [x_b, Z_b] where Z_b holds T_i[b] . T_j[b] for
// every j < i, ordered by i then j: pair p = i(i-1)/2 + j (the reference DLRM's strict
// lower triangle, no diagonal). With `itself` Z_b holds every j <= i instead (the reference
// DLRM's arch_interaction_itself): pair p = i(i+1)/2 + j, which is the strict pair (i+1, j)
// of F+1 features, so the same inversion serves both.

// Must match MAX_FEATURES in kernels/src/cuda/ops.rs (the struct is passed by value:
// 128 pointers = 1 KiB of the 4 KiB kernel-parameter space).
#define COHOST_MAX_FEATURES 128

struct FeaturePtrs {
    const float* p[COHOST_MAX_FEATURES];
};

// One block per sample row (grid-stride over rows). With `use_smem` the block first stages
// the F x d feature values of its row in dynamic shared memory (F * d * 4 bytes, chosen by
// the host only when it fits); otherwise it reads them from global memory (L1/L2 cached).
extern "C" __global__ void dot_interaction_f32(
    FeaturePtrs feats,
    int num_feats,
    long long n,
    int d,
    float* __restrict__ out,
    int use_smem,
    int itself)
{
    extern __shared__ float cohost_rows[];
    const int pairs = itself ? num_feats * (num_feats + 1) / 2 : num_feats * (num_feats - 1) / 2;
    const long long out_cols = (long long)d + pairs;

    for (long long b = blockIdx.x; b < n; b += gridDim.x) {
        float* __restrict__ out_row = out + b * out_cols;
        const float* __restrict__ x_row = feats.p[0] + b * d;
        for (int c = threadIdx.x; c < d; c += blockDim.x) {
            out_row[c] = x_row[c];
        }
        if (use_smem) {
            for (int e = threadIdx.x; e < num_feats * d; e += blockDim.x) {
                const int f = e / d;
                const int c = e - f * d;
                cohost_rows[e] = feats.p[f][b * d + c];
            }
            __syncthreads();
        }
        for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
            // Invert p = i(i-1)/2 + j with 0 <= j < i; the float guess is fixed up exactly.
            int i = (int)((1.0f + sqrtf(1.0f + 8.0f * (float)p)) * 0.5f);
            while (i * (i - 1) / 2 > p) {
                --i;
            }
            while ((i + 1) * i / 2 <= p) {
                ++i;
            }
            const int j = p - i * (i - 1) / 2;
            if (itself) {
                --i;
            }
            float acc = 0.0f;
            if (use_smem) {
                const float* ri = cohost_rows + i * d;
                const float* rj = cohost_rows + j * d;
                for (int c = 0; c < d; ++c) {
                    acc = fmaf(ri[c], rj[c], acc);
                }
            } else {
                const float* ri = feats.p[i] + b * d;
                const float* rj = feats.p[j] + b * d;
                for (int c = 0; c < d; ++c) {
                    acc = fmaf(ri[c], rj[c], acc);
                }
            }
            out_row[d + p] = acc;
        }
        if (use_smem) {
            // The next row reuses the shared buffer.
            __syncthreads();
        }
    }
}

// DLRM cat interaction: output row b (of width F * d) is [T_0[b], T_1[b], .., T_{F-1}[b]].
extern "C" __global__ void cat_interaction_f32(
    FeaturePtrs feats,
    int num_feats,
    long long n,
    int d,
    float* __restrict__ out)
{
    const long long width = (long long)num_feats * d;
    const long long total = n * width;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += stride) {
        const long long b = e / width;
        const long long col = e - b * width;
        const int f = (int)(col / d);
        const int c = (int)(col - (long long)f * d);
        out[e] = feats.p[f][b * d + c];
    }
}
