// The LSTM recurrence of one layer over a packed batch as one C++ loop: forward and hand-written backward.
//
// Built and loaded by ner/nn/lstm_kernel.py (torch.utils.cpp_extension, cached); the ops are registered as
// torch.ops.ner_lstm.forward / torch.ops.ner_lstm.backward. The numbers are those of the PyTorch path
// (ner/nn/recurrence.py, ner/nn/recurrence_backward.py) for the plain LSTM cell (gates i, f, g, o as torch),
// with optional cell clipping and a projection with optional clipping. It runs direction by direction (side by side
// on two threads where it has them), so that one direction's recurrent weight stays in cache over its steps. A step of many rows takes its product with an
// ATen matmul (MKL), then one pass of gate arithmetic over its rows, split across threads; a step of few rows
// (kFusedMaxRows: batch-1 inference, the last steps of long sentences) takes its products in that same pass,
// per block of hidden units, the sums kept in registers. The backward takes ATen matmuls at every step.
// Compiled with -ffast-math for the vectorised exp of glibc's libmvec (compile flags only: the library links
// without it, so the process's floating-point modes stay as they are).
//
// Layout (see ner/nn/packing.py): packed rows are time-major, step t holds the first batch_sizes[t] sentences
// of the length-sorted batch, so the rows of sentence b at step t + 1 are the first rows of step t. As in the
// PyTorch path the candidate's pre-activation arrives doubled, so its tanh is 2 sigmoid - 1.
// Shapes: D directions, N packed rows, B sentences, H hidden size, R recurrent size (proj_size or H).

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>

#include "lstm_bf16.h"

#include <cmath>
#include <optional>
#include <vector>

namespace {

using at::Tensor;

constexpr int64_t kGrainElements = 16384;  // elementwise work below this stays on one thread
constexpr int64_t kFusedMaxRows = 8;  // steps with at most this many rows take their products in the gate pass
constexpr int64_t kUnitBlock = 32;  // hidden units per task of such a step

template <typename T>
inline T sigmoid(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// Rows of gate arithmetic per parallel chunk, for rows of `width` elements.
int64_t grain(int64_t width) { return std::max<int64_t>(1, kGrainElements / std::max<int64_t>(1, width)); }

// Rows [offset, offset + size) of a (D, N, X) tensor, direction d: a contiguous (size, X) matrix.
Tensor rows(const Tensor& t, int64_t d, int64_t offset, int64_t size) { return t.select(0, d).narrow(0, offset, size); }

struct Clips {
  bool cell;
  double cell_bound;
  bool proj;
  double proj_bound;
};

Clips clips_of(const std::optional<double>& cell_clip, const std::optional<double>& proj_clip) {
  return {cell_clip.has_value(), cell_clip.value_or(0.0), proj_clip.has_value(), proj_clip.value_or(0.0)};
}

// Gate arithmetic of units [j0, j1) of one row of a step. a: the row's 4H pre-activations on entry, their
// sigmoids on exit; c: c_{t-1} on entry, c_t on exit; m = o * tanh(c_t); with kKeep, c_t before clipping (raw)
// and tanh(c_t) (th).
template <typename T, bool kClip, bool kKeep>
inline void forward_units(T* __restrict a, T* __restrict c, T* __restrict m, T* __restrict raw, T* __restrict th,
                          int64_t hidden, int64_t j0, int64_t j1, T bound) {
  for (int64_t q = 0; q < 4; ++q) {
    T* gate = a + q * hidden;
#pragma omp simd
    for (int64_t j = j0; j < j1; ++j) {
      gate[j] = sigmoid(gate[j]);
    }
  }
#pragma omp simd
  for (int64_t j = j0; j < j1; ++j) {
    const T i = a[j], f = a[hidden + j], g = T(2) * a[2 * hidden + j] - T(1), o = a[3 * hidden + j];
    const T cell_raw = f * c[j] + i * g;
    const T cell = kClip ? std::min(std::max(cell_raw, -bound), bound) : cell_raw;
    const T tanh_cell = T(2) * sigmoid(T(2) * cell) - T(1);
    c[j] = cell;
    m[j] = o * tanh_cell;
    if constexpr (kKeep) {
      raw[j] = cell_raw;
      th[j] = tanh_cell;
    }
  }
}

// a[q H + j] += sum_k h[k] w_t[k, q H + j] for the 4 gates q and the units j0 <= j < j0 + width (width <=
// kUnitBlock; kFull: width == kUnitBlock, so that the sums stay in registers). w_t (R, 4H) is the transposed
// recurrent weight of one direction, h (R,) one previous state.
template <typename T, bool kFull>
inline void recurrent_block(T* __restrict a, const T* __restrict w_t, const T* __restrict h, int64_t hidden,
                            int64_t recurrent, int64_t j0, int64_t width) {
  const int64_t n = kFull ? kUnitBlock : width;
  T sum[4][kUnitBlock] = {};
  for (int64_t k = 0; k < recurrent; ++k) {
    const T h_k = h[k];
    const T* w = w_t + k * 4 * hidden + j0;
    for (int64_t q = 0; q < 4; ++q) {
#pragma omp simd
      for (int64_t u = 0; u < n; ++u) {
        sum[q][u] += h_k * w[q * hidden + u];
      }
    }
  }
  for (int64_t q = 0; q < 4; ++q) {
#pragma omp simd
    for (int64_t u = 0; u < n; ++u) {
      a[q * hidden + j0 + u] += sum[q][u];
    }
  }
}

// One step's gate arithmetic for the `bs` rows of direction d. act (D, N, 4H) holds the input part of the
// pre-activations of the step's rows on entry (plus the recurrent part, unless w_t is given) and their sigmoids
// on exit; c_state (D, B, H) holds c_{t-1} on entry and c_t on exit (its first bs rows); writes
// m = o * tanh(c) to m_out (D, bs, H rows at m_offset), and c before clipping and tanh(c) at the step's rows of
// c_raw / tanh_c in training (kKeep). With w_t (R, 4H), direction d's transposed recurrent weight (steps of few
// rows), the products with h_prev (bs, R) are taken here too, per block of units: a step is one parallel pass.
template <typename T, bool kClip, bool kKeep>
void forward_step(Tensor& act, Tensor& c_state, Tensor& m_out, int64_t m_offset, Tensor* c_raw, Tensor* tanh_c,
                  int64_t d, int64_t offset, int64_t bs, int64_t hidden, T bound, const T* w_t, const T* h_prev,
                  int64_t recurrent) {
  const int64_t row0 = d * act.size(1) + offset;  // the step's first packed row
  T* act_data = act.data_ptr<T>() + row0 * 4 * hidden;
  T* c_data = c_state.data_ptr<T>() + d * c_state.size(1) * hidden;
  T* m_data = m_out.data_ptr<T>() + (d * m_out.size(1) + m_offset) * hidden;
  T* raw_data = kKeep ? c_raw->data_ptr<T>() + row0 * hidden : nullptr;
  T* tanh_data = kKeep ? tanh_c->data_ptr<T>() + row0 * hidden : nullptr;
  const auto units = [&](int64_t b, int64_t j0, int64_t j1) {
    T* a = act_data + b * 4 * hidden;
    if (w_t) {
      const auto block = j1 - j0 == kUnitBlock ? recurrent_block<T, true> : recurrent_block<T, false>;
      block(a, w_t, h_prev + b * recurrent, hidden, recurrent, j0, j1 - j0);
    }
    forward_units<T, kClip, kKeep>(a, c_data + b * hidden, m_data + b * hidden,
                                   kKeep ? raw_data + b * hidden : nullptr, kKeep ? tanh_data + b * hidden : nullptr,
                                   hidden, j0, j1, bound);
  };
  if (w_t) {  // tasks: blocks of units, each over the step's rows
    const int64_t blocks = (hidden + kUnitBlock - 1) / kUnitBlock;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t block = begin; block < end; ++block) {
        const int64_t j0 = block * kUnitBlock, j1 = std::min(j0 + kUnitBlock, hidden);
        for (int64_t b = 0; b < bs; ++b) units(b, j0, j1);
      }
    });
  } else {  // tasks: rows
    at::parallel_for(0, bs, grain(4 * hidden), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) units(b, 0, hidden);
    });
  }
}

// body(d) for each direction: side by side, one thread each, when there are two and threads to spare (the steps'
// products and passes then run on their direction's thread, with no synchronisation per step), else in turn.
template <typename F>
void for_each_direction(int64_t directions, const F& body) {
  if (directions == 2 && at::get_num_threads() > 1 && !at::in_parallel_region()) {
    const at::ThreadLocalState state;  // the caller's grad mode and dispatch state, for the other thread too
    at::parallel_for(0, 2, 1, [&](int64_t begin, int64_t end) {
      at::ThreadLocalStateGuard guard(state);
      for (int64_t d = begin; d < end; ++d) body(d);
    });
  } else {
    for (int64_t d = 0; d < directions; ++d) body(d);
  }
}

// rows (bs, G) float32 += h_pairs (bs, P) w_pairs (P, G) in bfloat16 products with float32 sums (lstm_bf16.h):
// w_pairs one direction's prepared weight (P, G, 2); column blocks split across threads.
void bf16_add_product(const Tensor& rows, const int32_t* h_pairs, const Tensor& w_pairs) {
#ifdef NER_LSTM_BF16
  const int64_t bs = rows.size(0), pairs = w_pairs.size(0), columns = w_pairs.size(1);
  const auto* h = reinterpret_cast<const uint32_t*>(h_pairs);
  const auto* w = reinterpret_cast<const uint32_t*>(w_pairs.data_ptr<at::BFloat16>());
  float* out = rows.data_ptr<float>();
  at::parallel_for(0, columns / kBf16Lanes, kBf16Vectors, [&](int64_t begin, int64_t end) {
    bf16_product(out, h, w, bs, pairs, columns, begin, end);
  });
#endif
}

// Rows of x (n, I) float32 as bfloat16 pairs into scratch (at least n, P) int32.
void to_bf16_pairs(const Tensor& x, int64_t pairs, Tensor& scratch) {
#ifdef NER_LSTM_BF16
  bf16_pairs(x.data_ptr<float>(), x.size(0), x.size(1), pairs, reinterpret_cast<uint32_t*>(scratch.data_ptr<int32_t>()));
#endif
}

void check_pairs(const Tensor& w_pairs, int64_t directions, int64_t inputs) {
  TORCH_CHECK(kNativeBf16, "w_pairs: bfloat16 products need a build for a CPU with AVX512-BF16");
  TORCH_CHECK(w_pairs.scalar_type() == at::kBFloat16 && w_pairs.is_contiguous() && w_pairs.dim() == 4 &&
                  w_pairs.size(0) == directions && w_pairs.size(1) == (inputs + 1) / 2 && w_pairs.size(2) % 16 == 0 &&
                  w_pairs.size(3) == 2,
              "w_pairs: expected contiguous bfloat16 (D, ceil(I / 2), G, 2), G a multiple of 16");
}

// bf16_linear(x, w_pairs, bias) -> (D, V, G): x (V, I) float32 times each direction's weight, prepared as bfloat16
// pairs (D, ceil(I / 2), G, 2), in bfloat16 products with float32 sums, plus bias (D, G) float32 if given.
Tensor bf16_linear(const Tensor& x, const Tensor& w_pairs, const std::optional<Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kFloat && x.is_contiguous(), "x: expected contiguous float32 (V, I)");
  const int64_t directions = w_pairs.size(0), rows = x.size(0), columns = w_pairs.size(2);
  check_pairs(w_pairs, directions, x.size(1));
  Tensor out = at::zeros({directions, rows, columns}, x.options());  // a new tensor, even for one row
  if (bias.has_value()) out.copy_(bias->unsqueeze(1));
  Tensor x_pairs = at::empty({rows, w_pairs.size(1)}, x.options().dtype(at::kInt));
  to_bf16_pairs(x, w_pairs.size(1), x_pairs);
  for (int64_t d = 0; d < directions; ++d) bf16_add_product(out.select(0, d), x_pairs.data_ptr<int32_t>(), w_pairs.select(0, d));
  return out;
}

// forward(gx, h0, c0, w_hh, w_hh_t, w_hr, batch_sizes, cell_clip, proj_clip, keep) -> [out, c_n, (act, c_raw,
// tanh_c, h_raw)]. gx (D, N, 4H) contiguous, is overwritten (it becomes the gate sigmoids); h0 (D, B, R), c0
// (D, B, H) in sorted order; w_hh (D, 4H, R), w_hh_t its transpose (D, R, 4H) or None, w_hr (D, R, H). out (D, N, R), c_n (D, B, H) sorted. With keep, what the
// backward reads: act (the sigmoids, = gx), c_raw and tanh_c (D, N, H), h_raw (D, N, R) before the projection's
// clip (empty without proj_clip).
std::vector<Tensor> lstm_forward(Tensor gx, const Tensor& h0, const Tensor& c0, const Tensor& w_hh,
                                 const std::optional<Tensor>& w_hh_t, const std::optional<Tensor>& w_hr, std::vector<int64_t> batch_sizes,
                                 std::optional<double> cell_clip, std::optional<double> proj_clip, bool keep,
                                 const std::optional<Tensor>& w_pairs) {
  TORCH_CHECK(gx.is_contiguous() && gx.dim() == 3, "gx: expected a contiguous (D, N, 4H) tensor");
  const int64_t directions = gx.size(0), packed = gx.size(1), hidden = w_hh.size(1) / 4;
  const int64_t recurrent = w_hh.size(2), batch = h0.size(1);
  const Clips clips = clips_of(cell_clip, proj_clip);
  const bool projected = w_hr.has_value();
  at::NoGradGuard no_grad;
  // w_hh transposed, contiguous (D, R, 4H): the fused steps read it (batch sizes never increase: the last is least).
  const bool any_fused = !batch_sizes.empty() && batch_sizes.back() <= kFusedMaxRows;
  Tensor w_t = w_hh_t.has_value() ? w_hh_t->contiguous() : (any_fused ? w_hh.transpose(1, 2).contiguous() : Tensor());
  Tensor w_hr_t = projected ? w_hr->transpose(1, 2) : Tensor();  // (D, H, R)
  Tensor out = at::empty({directions, packed, recurrent}, gx.options());
  Tensor c_state = c0.contiguous().clone();
  Tensor c_raw, tanh_c, h_raw, m_out;
  if (keep) {
    c_raw = at::empty({directions, packed, hidden}, gx.options());
    tanh_c = at::empty_like(c_raw);
  }
  h_raw = keep && clips.proj ? at::empty_like(out) : at::empty({0}, gx.options());
  // m = o * tanh(c): the output itself without a projection, else a scratch (D, B, H) for the projection.
  m_out = projected ? at::empty({directions, batch, hidden}, gx.options()) : out;
  Tensor h0c = h0.contiguous();
  const bool zero_h0 = !h0c.any().item<bool>();
  Tensor h_pairs;  // (D, B, P) the step's previous states as bfloat16 pairs, for bf16 products
  if (w_pairs.has_value()) {
    TORCH_CHECK(gx.scalar_type() == at::kFloat && !keep && !projected && w_pairs->size(2) == 4 * hidden,
                "w_pairs: bfloat16 products are for float32 inference without a projection, (D, P, 4H, 2)");
    check_pairs(*w_pairs, directions, recurrent);
    h_pairs = at::empty({directions, batch, w_pairs->size(1)}, gx.options().dtype(at::kInt));
  }
  // Direction by direction (they are independent; side by side on two threads), so that one direction's weights
  // stay in cache over its steps.
  AT_DISPATCH_FLOATING_TYPES(gx.scalar_type(), "lstm_forward", [&] {
    using T = scalar_t;
    const auto run = clips.cell ? (keep ? forward_step<T, true, true> : forward_step<T, true, false>)
                                : (keep ? forward_step<T, false, true> : forward_step<T, false, false>);
    const T* h0_data = h0c.data_ptr<T>();
    const T* out_data = out.data_ptr<T>();
    const T* w_t_data = w_t.defined() ? w_t.data_ptr<T>() : nullptr;
    for_each_direction(directions, [&](int64_t d) {
      int64_t offset = 0, previous = 0;
      for (size_t t = 0; t < batch_sizes.size(); ++t) {
        const int64_t bs = batch_sizes[t];
        const bool product = t > 0 || !zero_h0;  // a zero initial state adds nothing
        const bool fused = bs <= kFusedMaxRows;  // few rows: the products inside the step's pass
        if (product && !fused) {
          Tensor h_prev = t == 0 ? h0c.select(0, d).narrow(0, 0, bs) : rows(out, d, previous, bs);  // (bs, R)
          if (w_pairs.has_value()) {
            Tensor pairs = h_pairs.select(0, d);  // this direction's scratch
            to_bf16_pairs(h_prev, w_pairs->size(1), pairs);
            bf16_add_product(rows(gx, d, offset, bs), pairs.data_ptr<int32_t>(), w_pairs->select(0, d));
          } else {
            rows(gx, d, offset, bs).addmm_(h_prev, w_hh.select(0, d).t());
          }
        }
        const T* h_prev = t == 0 ? h0_data + d * batch * recurrent : out_data + (d * packed + previous) * recurrent;
        run(gx, c_state, m_out, projected ? 0 : offset, &c_raw, &tanh_c, d, offset, bs, hidden,
            static_cast<T>(clips.cell_bound), product && fused ? w_t_data + d * recurrent * 4 * hidden : nullptr, h_prev,
            recurrent);
        if (projected) {
          Tensor h = rows(out, d, offset, bs);
          Tensor m = m_out.select(0, d).narrow(0, 0, bs);
          at::mm_out(h, m, w_hr_t.select(0, d));
          if (clips.proj) {
            if (keep) rows(h_raw, d, offset, bs).copy_(h);
            h.clamp_(-clips.proj_bound, clips.proj_bound);
          }
        }
        previous = offset;
        offset += bs;
      }
    });
  });
  std::vector<Tensor> result{out, c_state};
  if (keep) {
    result.insert(result.end(), {gx, c_raw, tanh_c, h_raw});
  }
  return result;
}

// Backward gate arithmetic of one row: a the gate sigmoids, raw and th c_t before clipping and tanh(c_t), prev
// c_{t-1} (clipped here with kClipPrev), g_m the gradient of m; g_c: that of c_t on entry, of c_{t-1} on exit;
// g_pre: the gradient of the 4H (doubled-candidate) pre-activations.
template <typename T, bool kClip, bool kClipPrev>
inline void backward_row(const T* __restrict a, const T* __restrict raw, const T* __restrict th,
                         const T* __restrict prev, const T* __restrict g_m, T* __restrict g_c, T* __restrict g_pre,
                         int64_t hidden, T bound) {
#pragma omp simd
  for (int64_t j = 0; j < hidden; ++j) {
    const T i = a[j], f = a[hidden + j], s = a[2 * hidden + j], o = a[3 * hidden + j];
    const T g = T(2) * s - T(1), tanh_cell = th[j];
    const T c_prev = kClipPrev ? std::min(std::max(prev[j], -bound), bound) : prev[j];
    T dcell = g_c[j] + g_m[j] * o * (T(1) - tanh_cell * tanh_cell);
    if constexpr (kClip) dcell = std::abs(raw[j]) > bound ? T(0) : dcell;
    g_pre[j] = dcell * g * i * (T(1) - i);
    g_pre[hidden + j] = dcell * c_prev * f * (T(1) - f);
    g_pre[2 * hidden + j] = dcell * i * T(2) * s * (T(1) - s);
    g_pre[3 * hidden + j] = g_m[j] * tanh_cell * o * (T(1) - o);
    g_c[j] = dcell * f;
  }
}

// One step's backward gate arithmetic for the bs rows of direction d: dm (D, bs, H rows at dm_offset) the
// gradient of m = o * tanh(c); dc (D, B, H) holds the gradient of c_t on entry and of c_{t-1} on exit (first bs
// rows); writes the gradient of the (doubled-candidate) pre-activations at the step's rows of d_gates (D, N, 4H).
template <typename T, bool kClip>
void backward_step(const Tensor& act, const Tensor& c_raw, const Tensor& tanh_c, const Tensor& c0, const Tensor& dm,
                   int64_t dm_offset, Tensor& dc, Tensor& d_gates, int64_t d, int64_t offset, int64_t previous,
                   int64_t t, int64_t bs, int64_t hidden, T bound) {
  const int64_t packed = act.size(1), batch = dc.size(1);
  const int64_t row0 = d * packed + offset;  // the step's first packed row
  const T* act_data = act.data_ptr<T>() + row0 * 4 * hidden;
  const T* raw_data = c_raw.data_ptr<T>() + row0 * hidden;
  const T* tanh_data = tanh_c.data_ptr<T>() + row0 * hidden;
  // c_{t-1}: the previous step's cell of each sentence (clipped in backward_row), or c0.
  const T* prev_data = t == 0 ? c0.data_ptr<T>() + d * batch * hidden : c_raw.data_ptr<T>() + (d * packed + previous) * hidden;
  const T* dm_data = dm.data_ptr<T>() + (d * dm.size(1) + dm_offset) * hidden;
  T* dc_data = dc.data_ptr<T>() + d * batch * hidden;
  T* dg_data = d_gates.data_ptr<T>() + row0 * 4 * hidden;
  const auto run = kClip && t != 0 ? backward_row<T, kClip, true> : backward_row<T, kClip, false>;
  at::parallel_for(0, bs, grain(4 * hidden), [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      run(act_data + b * 4 * hidden, raw_data + b * hidden, tanh_data + b * hidden, prev_data + b * hidden,
          dm_data + b * hidden, dc_data + b * hidden, dg_data + b * 4 * hidden, hidden, bound);
    }
  });
}

// backward(d_out, d_c_n, h0, c0, out, act, c_raw, tanh_c, h_raw, w_hh, w_hr, batch_sizes, cell_clip, proj_clip)
// -> [d_gates (D, N, 4H), d_h0 (D, B, R), d_c0 (D, B, H), h_prev (D, N, R), d_h_raw (D, N, R) or empty].
// d_gates is the gradient of the gate pre-activations (the input projection's output); h_prev each row's
// previous state, which the weight gradient of w_hh reads; d_h_raw the gradient of the projection's output.
std::vector<Tensor> lstm_backward(const Tensor& d_out, const std::optional<Tensor>& d_c_n, const Tensor& h0,
                                  const Tensor& c0, const Tensor& out, const Tensor& act, const Tensor& c_raw,
                                  const Tensor& tanh_c, const std::optional<Tensor>& h_raw, const Tensor& w_hh,
                                  const std::optional<Tensor>& w_hr, std::vector<int64_t> batch_sizes,
                                  std::optional<double> cell_clip, std::optional<double> proj_clip) {
  const int64_t directions = act.size(0), packed = act.size(1), hidden = w_hh.size(1) / 4;
  const int64_t recurrent = w_hh.size(2), batch = h0.size(1);
  const Clips clips = clips_of(cell_clip, proj_clip);
  const bool projected = w_hr.has_value();
  at::NoGradGuard no_grad;
  Tensor d_h = d_out.contiguous().clone();  // (D, N, R): gradient reaching each row's output, recurrent part added
  Tensor d_h0 = at::zeros({directions, batch, recurrent}, act.options());
  Tensor dc = d_c_n.has_value() ? d_c_n->contiguous().clone() : at::zeros({directions, batch, hidden}, act.options());
  Tensor d_gates = at::empty_like(act);
  Tensor h_prev = at::empty({directions, packed, recurrent}, act.options());
  Tensor d_h_raw = projected ? d_h : at::empty({0}, act.options());  // masked in place where the projection clipped
  Tensor dm = projected ? at::empty({directions, batch, hidden}, act.options()) : d_h;
  Tensor c0c = c0.contiguous(), h0c = h0.contiguous();
  std::vector<int64_t> offsets(batch_sizes.size(), 0);
  for (size_t t = 1; t < batch_sizes.size(); ++t) offsets[t] = offsets[t - 1] + batch_sizes[t - 1];
  for_each_direction(directions, [&](int64_t d) {
    for (int64_t t = static_cast<int64_t>(batch_sizes.size()) - 1; t >= 0; --t) {
      const int64_t bs = batch_sizes[t], offset = offsets[t], previous = t ? offsets[t - 1] : 0;
      rows(h_prev, d, offset, bs).copy_(t ? rows(out, d, previous, bs) : h0c.select(0, d).narrow(0, 0, bs));
      if (projected) {
        Tensor g = rows(d_h, d, offset, bs);
        if (clips.proj) g.mul_(rows(*h_raw, d, offset, bs).abs().le(clips.proj_bound));
        Tensor dm_d = dm.select(0, d).narrow(0, 0, bs);
        at::mm_out(dm_d, g, w_hr->select(0, d));
      }
      AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "lstm_backward", [&] {
        const auto run = clips.cell ? backward_step<scalar_t, true> : backward_step<scalar_t, false>;
        run(act, c_raw, tanh_c, c0c, dm, projected ? 0 : offset, dc, d_gates, d, offset, previous, t, bs, hidden,
            static_cast<scalar_t>(clips.cell_bound));
      });
      Tensor target = t ? rows(d_h, d, previous, bs) : d_h0.select(0, d).narrow(0, 0, bs);
      target.addmm_(rows(d_gates, d, offset, bs), w_hh.select(0, d));
    }
  });
  return {d_gates, d_h0, dc, h_prev, d_h_raw};
}

}  // namespace

TORCH_LIBRARY(ner_lstm, m) {
  m.def("forward(Tensor gx, Tensor h0, Tensor c0, Tensor w_hh, Tensor? w_hh_t, Tensor? w_hr, int[] batch_sizes, "
        "float? cell_clip, float? proj_clip, bool keep, Tensor? w_pairs=None) -> Tensor[]",
        &lstm_forward);
  m.def("native_bf16() -> bool", [] { return kNativeBf16; });
  m.def("bf16_linear(Tensor x, Tensor w_pairs, Tensor? bias) -> Tensor", &bf16_linear);
  m.def("backward(Tensor d_out, Tensor? d_c_n, Tensor h0, Tensor c0, Tensor out, Tensor act, Tensor c_raw, "
        "Tensor tanh_c, Tensor? h_raw, Tensor w_hh, Tensor? w_hr, int[] batch_sizes, float? cell_clip, "
        "float? proj_clip) -> Tensor[]",
        &lstm_backward);
}
