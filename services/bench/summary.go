package bench

import (
	"fmt"
	"math"
	"slices"
	"strconv"
)

// Summary is the median and range of repeated measurements.
type Summary struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

// Summarize returns the median, minimum and maximum of xs (NaNs ignored);
// the zero Summary for none.
func Summarize(xs []float64) Summary {
	s := make([]float64, 0, len(xs))
	for _, x := range xs {
		if !math.IsNaN(x) {
			s = append(s, x)
		}
	}
	if len(s) == 0 {
		return Summary{}
	}
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return Summary{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// String renders "median [min..max]" (just the value for one sample).
func (s Summary) String() string {
	if s.N == 0 {
		return "-"
	}
	if s.N == 1 || s.Min == s.Max {
		return FormatNum(s.Median)
	}
	return fmt.Sprintf("%s [%s..%s]", FormatNum(s.Median), FormatNum(s.Min), FormatNum(s.Max))
}

// FormatNum renders x with about three significant digits, using k and M
// suffixes for large values: 0.512, 7.75, 25.3, 812, 12.3k, 1.05M.
func FormatNum(x float64) string {
	switch {
	case math.IsNaN(x) || math.IsInf(x, 0):
		return "-"
	case x < 0:
		return "-" + FormatNum(-x)
	case x == 0:
		return "0"
	case x >= 999_500: // what would round to 1000k
		return sig3(x/1e6) + "M"
	case x >= 1e4:
		return sig3(x/1e3) + "k"
	case x >= 1000:
		return strconv.FormatFloat(x, 'f', 0, 64)
	}
	return sig3(x)
}

// sig3 formats x (> 0) with three significant digits, no exponent
// (thresholds are where rounding adds a digit: 9.996 is "10.0").
func sig3(x float64) string {
	switch {
	case x >= 99.95:
		return strconv.FormatFloat(x, 'f', 0, 64)
	case x >= 9.995:
		return strconv.FormatFloat(x, 'f', 1, 64)
	case x >= 0.9995:
		return strconv.FormatFloat(x, 'f', 2, 64)
	case x >= 0.001:
		return strconv.FormatFloat(x, 'f', 3, 64)
	}
	return strconv.FormatFloat(x, 'g', 2, 64)
}

// Ratio is a/b, NaN when b is not positive.
func Ratio(a, b float64) float64 {
	if !(b > 0) {
		return math.NaN()
	}
	return a / b
}

// FormatRatio renders a ratio as "3.12×" ("-" when undefined).
func FormatRatio(r float64) string {
	if math.IsNaN(r) || math.IsInf(r, 0) {
		return "-"
	}
	return FormatNum(r) + "×"
}
