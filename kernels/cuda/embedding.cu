// Embedding-table kernels (compiled at start-up with NVRTC).
//
// A table is a `rows x dim` row-major f32 matrix. `table` may be device memory (a resident
// table) or a device pointer to pinned, mapped host memory (zero-copy reads over the bus,
// for offloaded tables): the kernels do not care which.

// out[r, :] = sum over k < bag of table[idx[r * bag + k], :], for r < n.
// Indices are validated on the host before launch. One block per output row (grid-stride),
// threads across the embedding dimension so each row read is coalesced.
extern "C" __global__ void embedding_bag_sum_f32(
    const float* __restrict__ table,
    const long long* __restrict__ idx,
    long long n,
    int bag,
    int dim,
    float* __restrict__ out)
{
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const long long* __restrict__ row_idx = idx + r * bag;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            float acc = 0.0f;
            for (int k = 0; k < bag; ++k) {
                acc += table[row_idx[k] * dim + c];
            }
            out[r * dim + c] = acc;
        }
    }
}

// dst[dst_rows[k], :] = src[src_rows[k], :] for k < count.
// Fills a device-side cache of hot rows from an offloaded table on a cache miss: `src` is
// the device pointer of the pinned, mapped host copy of the table, `dst` the cache.
extern "C" __global__ void gather_rows_f32(
    const float* __restrict__ src,
    const long long* __restrict__ src_rows,
    const long long* __restrict__ dst_rows,
    long long count,
    int dim,
    float* __restrict__ dst)
{
    for (long long k = blockIdx.x; k < count; k += gridDim.x) {
        const float* __restrict__ from = src + src_rows[k] * dim;
        float* __restrict__ to = dst + dst_rows[k] * dim;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            to[c] = from[c];
        }
    }
}

// Sum pooling for an offloaded table with a device-side hot-row cache.
// out[r, :] = sum over k < bag of row(src[r * bag + k]), for r < n, where a source
// `s >= 0` is host row `s` of `host` (pinned, mapped host memory, read over the bus) and
// `s < 0` is cache slot `-s - 1` of `cache` (device memory, `? x dim`). Then, for k < n_fill,
// cache[fill_slots[k], :] = host[fill_rows[k], :]: the batch's misses are admitted.
// The host plan guarantees that no slot read by this launch is also filled by it, so
// the two phases never touch the same memory. Summation order is the bag's order, as in
// `embedding_bag_sum_f32`, so results are bit-identical to it.
extern "C" __global__ void embedding_bag_cached_f32(
    const float* __restrict__ host,
    float* cache,
    const long long* __restrict__ src,
    long long n,
    int bag,
    int dim,
    const long long* __restrict__ fill_rows,
    const long long* __restrict__ fill_slots,
    long long n_fill,
    float* __restrict__ out)
{
    for (long long r = blockIdx.x; r < n; r += gridDim.x) {
        const long long* __restrict__ row_src = src + r * bag;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            float acc = 0.0f;
            for (int k = 0; k < bag; ++k) {
                const long long s = row_src[k];
                acc += s >= 0 ? host[s * dim + c] : cache[(-s - 1) * dim + c];
            }
            out[r * dim + c] = acc;
        }
    }
    for (long long k = blockIdx.x; k < n_fill; k += gridDim.x) {
        const float* __restrict__ from = host + fill_rows[k] * dim;
        float* to = cache + fill_slots[k] * dim;
        for (int c = threadIdx.x; c < dim; c += blockDim.x) {
            to[c] = from[c];
        }
    }
}
