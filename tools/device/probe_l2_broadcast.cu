// Probe: how long 320 resident blocks (3 an SM, as the decode step's out_proj) take to stage one vector that the kernel
// before wrote, all released at once by a device-wide counter, against each block reading one of R copies of it
// (R = 0: no loads, the stores and barrier alone). Prints, per vector size and R, the min / median / p90 / max of the
// per-block times (%globaltimer) and the spread of the whole, each the median of 12 launches after 3 warm-ups.
// On the GPU machine: nvcc -std=c++17 -arch=sm_90a -O3 -o /tmp/probe tools/device/probe_l2_broadcast.cu && /tmp/probe
// (docs/gpu-results.md, run 141).
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cstdio>
#include <vector>
#include <algorithm>

#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); return 1; } } while (0)

__global__ void produce(unsigned char* y, size_t bytes_per, int replicas, size_t stride, int seed) {
    size_t total = bytes_per * replicas;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
        size_t r = i / bytes_per, k = i % bytes_per;
        y[r * stride + k] = (unsigned char)(k * 7 + seed);
    }
}

__device__ __forceinline__ unsigned long long gtime() { unsigned long long t; asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t)); return t; }

// bytes: the vector's size (multiple of 16, at most 20480). Each thread issues all its 16-byte loads, then stores them.
__global__ void __launch_bounds__(256, 3) stage(const unsigned char* y, int bytes, int replicas, size_t stride, unsigned* arrive, long long* t, float* sink) {
    __shared__ __align__(16) uint4 xs[20480 / 16];
    extern __shared__ uint4 pad[];
    if (threadIdx.x == 0) {
        atomicAdd(arrive, 1u);
        while (atomicAdd(arrive, 0u) < gridDim.x) {}
    }
    __syncthreads();
    long long c0 = clock64();
    unsigned long long g0 = gtime();
    const uint4* src = reinterpret_cast<const uint4*>(y + (replicas > 0 ? (size_t)(blockIdx.x % replicas) * stride : 0));
    const int vecs = bytes / 16;
    uint4 raw[5];
#pragma unroll
    for (int u = 0; u < 5; ++u) {
        int i = threadIdx.x + u * 256;
        if (replicas > 0) raw[u] = i < vecs ? __ldg(src + i) : make_uint4(0, 0, 0, 0);
        else raw[u] = make_uint4(i, i, i, i);
    }
#pragma unroll
    for (int u = 0; u < 5; ++u) {
        int i = threadIdx.x + u * 256;
        if (i < vecs) xs[i] = raw[u];
    }
    __syncthreads();
    long long c1 = clock64();
    unsigned long long g1 = gtime();
    if (threadIdx.x == 0) {
        t[blockIdx.x * 4 + 0] = c1 - c0;
        t[blockIdx.x * 4 + 1] = (long long)(g1 - g0);
        t[blockIdx.x * 4 + 2] = (long long)g0;
        t[blockIdx.x * 4 + 3] = (long long)g1;
    }
    if (xs[(threadIdx.x * 7) % (vecs > 0 ? vecs : 1)].x == 0xdeadbeef) sink[blockIdx.x] = 1.0f;
}

int main() {
    const int blocks = 320;
    const size_t stride = 32768;  // replicas 32 KB apart
    const int max_rep = 320;
    unsigned char* y; unsigned* arrive; long long* t; float* sink;
    CK(cudaMalloc(&y, stride * max_rep));
    CK(cudaMalloc(&arrive, 4));
    CK(cudaMalloc(&t, blocks * 4 * 8));
    CK(cudaMalloc(&sink, blocks * 4));
    CK(cudaFuncSetAttribute(stage, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024));
    int sizes[] = {10240, 5120, 15360, 20480};
    int reps[] = {0, 1, 2, 4, 8, 16, 32, 320};
    std::vector<long long> h(blocks * 4);
    printf("bytes replicas | block staging ns: min median p90 max | spread of end times ns (max g1 - min g0)\n");
    for (int bytes : sizes) {
        for (int rep : reps) {
            std::vector<double> med, mx, mn, p90, span;
            for (int trial = 0; trial < 15; ++trial) {
                produce<<<264, 256>>>(y, bytes, rep > 0 ? rep : 1, stride, trial);
                CK(cudaMemsetAsync(arrive, 0, 4));
                stage<<<blocks, 256, 48 * 1024>>>(y, bytes, rep, stride, arrive, t, sink);
                CK(cudaGetLastError());
                CK(cudaMemcpy(h.data(), t, blocks * 4 * 8, cudaMemcpyDeviceToHost));
                if (trial < 3) continue;
                std::vector<long long> d(blocks);
                long long gmin = h[2], gmax = h[3];
                for (int b = 0; b < blocks; ++b) { d[b] = h[b * 4 + 1]; gmin = std::min(gmin, h[b * 4 + 2]); gmax = std::max(gmax, h[b * 4 + 3]); }
                std::sort(d.begin(), d.end());
                mn.push_back(d[0]); med.push_back(d[blocks / 2]); p90.push_back(d[blocks * 9 / 10]); mx.push_back(d[blocks - 1]); span.push_back(gmax - gmin);
            }
            auto m = [](std::vector<double> v) { std::sort(v.begin(), v.end()); return v[v.size() / 2]; };
            printf("%6d %4d | %6.0f %6.0f %6.0f %6.0f | %6.0f\n", bytes, rep, m(mn), m(med), m(p90), m(mx), m(span));
        }
    }
    return 0;
}
