// Element-wise kernels of the cohost CUDA backend (compiled at start-up with NVRTC).
//
// All matrices are 2-D, row-major, f32. Every kernel uses a grid-stride loop, so any grid
// size is correct; the host picks one that fills the device.

// Activation codes; must match `Activation` in kernels/src/cuda/ops.rs.
#define COHOST_ACT_NONE 0
#define COHOST_ACT_RELU 1
#define COHOST_ACT_SIGMOID 2

__device__ __forceinline__ float cohost_sigmoid(float v) {
    // expf(-v) overflows to +inf for v < -88, giving exactly 0: no NaN either way.
    return 1.0f / (1.0f + expf(-v));
}

// In place: y[r, c] = act(y[r, c] + bias[c]) for a `rows x cols` matrix. Runs right after
// the cuBLAS GEMM of a linear layer, fusing its bias and activation into one pass.
extern "C" __global__ void bias_act_f32(
    float* __restrict__ y,
    const float* __restrict__ bias,
    long long rows,
    long long cols,
    int act)
{
    const long long total = rows * cols;
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
        float v = y[i] + bias[i % cols];
        if (act == COHOST_ACT_RELU) {
            v = fmaxf(v, 0.0f);
        } else if (act == COHOST_ACT_SIGMOID) {
            v = cohost_sigmoid(v);
        }
        y[i] = v;
    }
}

// out[i] = 1 / (1 + e^-x[i]) for `n` elements.
extern "C" __global__ void sigmoid_f32(
    const float* __restrict__ x,
    float* __restrict__ out,
    long long n)
{
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = cohost_sigmoid(x[i]);
    }
}

// out[i] = x0[i] * y[i] + xl[i] for `n` elements: a DCN cross layer's combine, after its
// two GEMMs and bias have produced y = W (V x_l) + b.
extern "C" __global__ void cross_f32(
    const float* __restrict__ x0,
    const float* __restrict__ y,
    const float* __restrict__ xl,
    float* __restrict__ out,
    long long n)
{
    const long long stride = (long long)blockDim.x * gridDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        out[i] = fmaf(x0[i], y[i], xl[i]);
    }
}
