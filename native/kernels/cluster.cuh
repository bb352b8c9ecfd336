// Thread-block cluster primitives in PTX (compute capability 9.0+; below it they compile to nothing and the kernels
// that use them are never launched): the block's rank in its cluster, stores and loads in another block's shared
// memory (distributed shared memory), and the cluster-wide barrier.
#pragma once

namespace mamba::cuda {

__device__ __forceinline__ unsigned cluster_rank() {
    unsigned r = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
#endif
    return r;
}

// The shared-memory address of `mine` in cluster block `rank`'s shared memory.
__device__ __forceinline__ unsigned cluster_address(const void * mine, unsigned rank) {
    unsigned remote = 0;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    const unsigned local = unsigned(__cvta_generic_to_shared(mine));
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(local), "r"(rank));
#else
    (void)mine, (void)rank;
#endif
    return remote;
}

// Stores v at the address of `mine` in the shared memory of cluster block `rank`.
__device__ __forceinline__ void store_in_block(double * mine, unsigned rank, double v) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("st.shared::cluster.f64 [%0], %1;" ::"r"(cluster_address(mine, rank)), "d"(v) : "memory");
#else
    (void)mine, (void)rank, (void)v;
#endif
}

// The float at the address of `mine` in the shared memory of cluster block `rank`.
__device__ __forceinline__ float load_from_block(const float * mine, unsigned rank) {
    float v = 0.0f;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(cluster_address(mine, rank)) : "memory");
#else
    (void)mine, (void)rank;
#endif
    return v;
}

// Every thread of the cluster: arrive (releasing this thread's writes), then wait for all (acquiring theirs).
__device__ __forceinline__ void cluster_arrive() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.arrive.aligned;" ::: "memory");
#endif
}
__device__ __forceinline__ void cluster_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("barrier.cluster.wait.aligned;" ::: "memory");
#endif
}

}  // namespace mamba::cuda
