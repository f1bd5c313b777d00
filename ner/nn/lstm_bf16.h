// The recurrent product of an LSTM step in bfloat16 with float32 sums, for CPUs with AVX512-BF16 dot products.
//
// gx (rows, G) float32 += h (rows, R) w_hh^T, where h is rounded to bfloat16 (nearest even) and w_hh comes
// prepared as bfloat16 pairs: w_pairs (P, G, 2) with P = ceil(R / 2), w_pairs[p, g, i] = w_hh[g, 2 p + i] (zero
// past R). One vdpbf16ps adds 16 columns' products of one pair of inputs, summed in float32, so the only
// rounding is that of h and w_hh to bfloat16. Included by lstm_kernel.cpp; compiled only where the compiler
// targets AVX512-BF16 (-march=native on such a CPU), else kNativeBf16 is false and nothing here is defined.

#pragma once

#if defined(__AVX512F__) && defined(__AVX512BF16__)
#include <immintrin.h>

#include <algorithm>
#include <cstdint>

#define NER_LSTM_BF16 1
constexpr bool kNativeBf16 = true;
constexpr int64_t kBf16Lanes = 16;  // float32 columns per vector
constexpr int64_t kBf16Rows = 6;  // rows per register block
constexpr int64_t kBf16Vectors = 4;  // column vectors per register block: 6 x 4 sums in registers

// Rows of h (rows, width) float32 as bfloat16 pairs, out (rows, pairs) of 32 bits, the odd input's partner zero.
inline void bf16_pairs(const float* __restrict h, int64_t rows, int64_t width, int64_t pairs, uint32_t* __restrict out) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = h + r * width;
    uint16_t* dst = reinterpret_cast<uint16_t*>(out + r * pairs);
    int64_t k = 0;
    for (; k + kBf16Lanes <= width; k += kBf16Lanes) {
      const __m256bh half = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + k));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + k), reinterpret_cast<const __m256i&>(half));
    }
    for (; k < 2 * pairs; ++k) {
      const __m128bh one = _mm_cvtneps_pbh(_mm_set_ss(k < width ? src[k] : 0.0f));
      dst[k] = static_cast<uint16_t>(_mm_extract_epi16(reinterpret_cast<const __m128i&>(one), 0));
    }
  }
}

// gx rows [0, kRows) and column vectors [0, kVectors) of the block at gx += h_pairs w_pairs, over all pairs.
template <int kRows, int kVectors>
inline void bf16_block(float* __restrict gx, int64_t gx_stride, const uint32_t* __restrict h_pairs, int64_t pairs,
                       const uint32_t* __restrict w_pairs, int64_t columns) {
  __m512 sum[kRows][kVectors];
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) sum[r][v] = _mm512_loadu_ps(gx + r * gx_stride + v * kBf16Lanes);
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh w[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      const __m512i bits = _mm512_loadu_si512(w_pairs + p * columns + v * kBf16Lanes);
      w[v] = reinterpret_cast<const __m512bh&>(bits);
    }
    for (int r = 0; r < kRows; ++r) {
      const __m512i pair = _mm512_set1_epi32(static_cast<int>(h_pairs[r * pairs + p]));
      const __m512bh h = reinterpret_cast<const __m512bh&>(pair);
      for (int v = 0; v < kVectors; ++v) sum[r][v] = _mm512_dpbf16_ps(sum[r][v], h, w[v]);
    }
  }
  for (int r = 0; r < kRows; ++r)
    for (int v = 0; v < kVectors; ++v) _mm512_storeu_ps(gx + r * gx_stride + v * kBf16Lanes, sum[r][v]);
}

// A block of `rows` <= kBf16Rows rows and `vectors` <= kBf16Vectors column vectors (sizes known at compile time).
template <int kVectors>
inline void bf16_rows(int64_t rows, float* gx, int64_t gx_stride, const uint32_t* h_pairs, int64_t pairs,
                      const uint32_t* w_pairs, int64_t columns) {
  switch (rows) {
    case 6: return bf16_block<6, kVectors>(gx, gx_stride, h_pairs, pairs, w_pairs, columns);
    case 5: return bf16_block<5, kVectors>(gx, gx_stride, h_pairs, pairs, w_pairs, columns);
    case 4: return bf16_block<4, kVectors>(gx, gx_stride, h_pairs, pairs, w_pairs, columns);
    case 3: return bf16_block<3, kVectors>(gx, gx_stride, h_pairs, pairs, w_pairs, columns);
    case 2: return bf16_block<2, kVectors>(gx, gx_stride, h_pairs, pairs, w_pairs, columns);
    default: return bf16_block<1, kVectors>(gx, gx_stride, h_pairs, pairs, w_pairs, columns);
  }
}

// gx (rows, columns) += h_pairs (rows, pairs) w_pairs (pairs, columns) for the column vectors [v0, v1);
// columns a multiple of kBf16Lanes.
inline void bf16_product(float* gx, const uint32_t* h_pairs, const uint32_t* w_pairs, int64_t rows, int64_t pairs,
                         int64_t columns, int64_t v0, int64_t v1) {
  for (int64_t v = v0; v < v1; v += kBf16Vectors) {
    const int64_t vectors = std::min<int64_t>(kBf16Vectors, v1 - v), column = v * kBf16Lanes;
    for (int64_t r = 0; r < rows; r += kBf16Rows) {
      const int64_t block_rows = std::min<int64_t>(kBf16Rows, rows - r);
      float* out = gx + r * columns + column;
      const uint32_t* h = h_pairs + r * pairs;
      const uint32_t* w = w_pairs + column;
      switch (vectors) {
        case 4: bf16_rows<4>(block_rows, out, columns, h, pairs, w, columns); break;
        case 3: bf16_rows<3>(block_rows, out, columns, h, pairs, w, columns); break;
        case 2: bf16_rows<2>(block_rows, out, columns, h, pairs, w, columns); break;
        default: bf16_rows<1>(block_rows, out, columns, h, pairs, w, columns); break;
      }
    }
  }
}
#else
constexpr bool kNativeBf16 = false;
#endif
