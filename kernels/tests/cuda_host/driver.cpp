// Test-only driver of kernels/tests/cuda_host.rs: runs one kernel launch of kernels/cuda/*.cu
// on the CPU under host_shim.h. Included after the shim and the kernel sources.
//
// stdin: one text line `<kernel> <grid> <block> <shared bytes> <scalar args...>`, then the
// kernel's arrays, each as a little-endian u64 element count followed by the raw elements
// (f32 or i64). stdout: the output array's raw f32 elements. Outputs the kernel must write
// start as NaN.

#include <cstdint>
#include <iostream>
#include <string>

namespace {

template <class T>
std::vector<T> read_array() {
    std::uint64_t n = 0;
    if (!std::cin.read(reinterpret_cast<char*>(&n), sizeof n)) {
        std::fprintf(stderr, "driver: missing array\n");
        std::exit(2);
    }
    std::vector<T> v(n);
    if (n && !std::cin.read(reinterpret_cast<char*>(v.data()), n * sizeof(T))) {
        std::fprintf(stderr, "driver: short array (%llu elements)\n", (unsigned long long)n);
        std::exit(2);
    }
    return v;
}

void write_array(const std::vector<float>& v) {
    std::cout.write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float));
    std::cout.flush();
}

std::vector<float> unwritten(std::size_t n) {
    return std::vector<float>(n, NAN);
}

}  // namespace

int main() {
    std::string kernel;
    unsigned grid = 0, block = 0;
    std::size_t smem = 0;
    std::cin >> kernel >> grid >> block >> smem;
    if (kernel == "bias_act_f32") {
        long long rows, cols;
        int act;
        std::cin >> rows >> cols >> act;
        std::cin.get();
        auto y = read_array<float>();
        auto bias = read_array<float>();
        cohost_shim::launch(grid, block, smem,
                            [&] { bias_act_f32(y.data(), bias.data(), rows, cols, act); });
        write_array(y);
    } else if (kernel == "sigmoid_f32") {
        long long n;
        std::cin >> n;
        std::cin.get();
        auto x = read_array<float>();
        auto out = unwritten(x.size());
        cohost_shim::launch(grid, block, smem, [&] { sigmoid_f32(x.data(), out.data(), n); });
        write_array(out);
    } else if (kernel == "dot_interaction_f32") {
        int feats, d, use_smem, itself;
        long long n;
        std::cin >> feats >> n >> d >> use_smem >> itself;
        std::cin.get();
        if (feats < 1 || feats > COHOST_MAX_FEATURES) {
            std::fprintf(stderr, "driver: %d features\n", feats);
            return 2;
        }
        std::vector<std::vector<float>> rows(feats);
        FeaturePtrs ptrs{};
        for (int f = 0; f < feats; ++f) {
            rows[f] = read_array<float>();
            ptrs.p[f] = rows[f].data();
        }
        const int pairs = itself ? feats * (feats + 1) / 2 : feats * (feats - 1) / 2;
        auto out = unwritten(n * (d + pairs));
        cohost_shim::launch(grid, block, smem, [&] {
            dot_interaction_f32(ptrs, feats, n, d, out.data(), use_smem, itself);
        });
        write_array(out);
    } else if (kernel == "cat_interaction_f32") {
        int feats, d;
        long long n;
        std::cin >> feats >> n >> d;
        std::cin.get();
        if (feats < 1 || feats > COHOST_MAX_FEATURES) {
            std::fprintf(stderr, "driver: %d features\n", feats);
            return 2;
        }
        std::vector<std::vector<float>> rows(feats);
        FeaturePtrs ptrs{};
        for (int f = 0; f < feats; ++f) {
            rows[f] = read_array<float>();
            ptrs.p[f] = rows[f].data();
        }
        auto out = unwritten(n * feats * d);
        cohost_shim::launch(grid, block, smem, [&] {
            cat_interaction_f32(ptrs, feats, n, d, out.data());
        });
        write_array(out);
    } else if (kernel == "cross_f32") {
        long long n;
        std::cin >> n;
        std::cin.get();
        auto x0 = read_array<float>();
        auto y = read_array<float>();
        auto xl = read_array<float>();
        auto out = unwritten(x0.size());
        cohost_shim::launch(grid, block, smem, [&] {
            cross_f32(x0.data(), y.data(), xl.data(), out.data(), n);
        });
        write_array(out);
    } else if (kernel == "embedding_bag_sum_f32") {
        long long n;
        int bag, dim;
        std::cin >> n >> bag >> dim;
        std::cin.get();
        auto table = read_array<float>();
        auto idx = read_array<long long>();
        auto out = unwritten(n * dim);
        cohost_shim::launch(grid, block, smem, [&] {
            embedding_bag_sum_f32(table.data(), idx.data(), n, bag, dim, out.data());
        });
        write_array(out);
    } else if (kernel == "gather_rows_f32") {
        long long count;
        int dim;
        std::cin >> count >> dim;
        std::cin.get();
        auto src = read_array<float>();
        auto src_rows = read_array<long long>();
        auto dst_rows = read_array<long long>();
        auto dst = read_array<float>();
        cohost_shim::launch(grid, block, smem, [&] {
            gather_rows_f32(src.data(), src_rows.data(), dst_rows.data(), count, dim,
                            dst.data());
        });
        write_array(dst);
    } else if (kernel == "embedding_bag_cached_f32") {
        // Writes the pooled output followed by the cache after the launch.
        long long n, n_fill;
        int bag, dim;
        std::cin >> n >> bag >> dim >> n_fill;
        std::cin.get();
        auto host = read_array<float>();
        auto cache = read_array<float>();
        auto src = read_array<long long>();
        auto fill_rows = read_array<long long>();
        auto fill_slots = read_array<long long>();
        auto out = unwritten(n * dim);
        cohost_shim::launch(grid, block, smem, [&] {
            embedding_bag_cached_f32(host.data(), cache.data(), src.data(), n, bag, dim,
                                     fill_rows.data(), fill_slots.data(), n_fill, out.data());
        });
        out.insert(out.end(), cache.begin(), cache.end());
        write_array(out);
    } else {
        std::fprintf(stderr, "driver: unknown kernel '%s'\n", kernel.c_str());
        return 2;
    }
    return 0;
}
