package operator

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
)

// Codec encodes values of T for checkpoints. Errors must never be silent:
// a decode error names what is wrong.
//
// A codec is called on the snapshot worker (Append, while processing goes
// on) and on the task's goroutine (Decode, when a state is registered), so
// it must be safe for concurrent use; the built-in codecs are stateless.
type Codec[T any] interface {
	// Append appends the encoding of v to dst and returns the extended
	// slice.
	Append(dst []byte, v T) ([]byte, error)
	// Decode decodes b, which it must not keep (it copies what it needs).
	Decode(b []byte) (T, error)
}

// StringCodec returns the codec of strings: their bytes as they are.
func StringCodec() Codec[string] { return stringCodec{} }

// BytesCodec returns the codec of byte slices: the bytes as they are.
// Decode returns a copy, never nil (an encoded nil slice decodes as an
// empty one).
func BytesCodec() Codec[[]byte] { return bytesCodec{} }

// Int64Codec returns the codec of int64: 8 bytes, big-endian.
func Int64Codec() Codec[int64] { return int64Codec{} }

// IntCodec returns the codec of int: 8 bytes, big-endian (the same bytes
// as Int64Codec, whatever the size of int).
func IntCodec() Codec[int] { return intCodec{} }

// Uint64Codec returns the codec of uint64: 8 bytes, big-endian.
func Uint64Codec() Codec[uint64] { return uint64Codec{} }

// Float64Codec returns the codec of float64: the 8 bytes of its IEEE 754
// bits, big-endian.
func Float64Codec() Codec[float64] { return float64Codec{} }

// BoolCodec returns the codec of bool: one byte, 0 or 1.
func BoolCodec() Codec[bool] { return boolCodec{} }

// JSONCodec returns a codec that encodes values with encoding/json: the
// default for structs. Fields that encoding/json ignores (unexported
// ones) are not checkpointed.
func JSONCodec[T any]() Codec[T] { return jsonCodec[T]{} }

// DefaultCodec returns a fast built-in codec when T is string, []byte, int,
// int64, uint64, int32, float64 or bool (exactly these types, not types
// defined on them), and JSONCodec[T] otherwise.
func DefaultCodec[T any]() Codec[T] {
	var zero T
	var c any
	switch any(zero).(type) {
	case string:
		c = stringCodec{}
	case []byte:
		c = bytesCodec{}
	case int:
		c = intCodec{}
	case int64:
		c = int64Codec{}
	case uint64:
		c = uint64Codec{}
	case int32:
		c = int32Codec{}
	case float64:
		c = float64Codec{}
	case bool:
		c = boolCodec{}
	default:
		return jsonCodec[T]{}
	}
	return c.(Codec[T])
}

type stringCodec struct{}

func (stringCodec) Append(dst []byte, v string) ([]byte, error) { return append(dst, v...), nil }
func (stringCodec) Decode(b []byte) (string, error)             { return string(b), nil }

type bytesCodec struct{}

func (bytesCodec) Append(dst []byte, v []byte) ([]byte, error) { return append(dst, v...), nil }
func (bytesCodec) Decode(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return []byte{}, nil
	}
	return bytes.Clone(b), nil
}

// fixed checks the length of a fixed-width encoding.
func fixed(name string, b []byte, want int) error {
	if len(b) != want {
		return fmt.Errorf("operator: %s codec: %d bytes, want %d", name, len(b), want)
	}
	return nil
}

type int64Codec struct{}

func (int64Codec) Append(dst []byte, v int64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(v)), nil
}

func (int64Codec) Decode(b []byte) (int64, error) {
	if err := fixed("int64", b, 8); err != nil {
		return 0, err
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

type intCodec struct{}

func (intCodec) Append(dst []byte, v int) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, uint64(int64(v))), nil
}

func (intCodec) Decode(b []byte) (int, error) {
	if err := fixed("int", b, 8); err != nil {
		return 0, err
	}
	v := int64(binary.BigEndian.Uint64(b))
	if v < math.MinInt || v > math.MaxInt {
		return 0, fmt.Errorf("operator: int codec: %d does not fit in an int", v)
	}
	return int(v), nil
}

type int32Codec struct{}

func (int32Codec) Append(dst []byte, v int32) ([]byte, error) {
	return binary.BigEndian.AppendUint32(dst, uint32(v)), nil
}

func (int32Codec) Decode(b []byte) (int32, error) {
	if err := fixed("int32", b, 4); err != nil {
		return 0, err
	}
	return int32(binary.BigEndian.Uint32(b)), nil
}

type uint64Codec struct{}

func (uint64Codec) Append(dst []byte, v uint64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, v), nil
}

func (uint64Codec) Decode(b []byte) (uint64, error) {
	if err := fixed("uint64", b, 8); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b), nil
}

type float64Codec struct{}

func (float64Codec) Append(dst []byte, v float64) ([]byte, error) {
	return binary.BigEndian.AppendUint64(dst, math.Float64bits(v)), nil
}

func (float64Codec) Decode(b []byte) (float64, error) {
	if err := fixed("float64", b, 8); err != nil {
		return 0, err
	}
	return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
}

type boolCodec struct{}

func (boolCodec) Append(dst []byte, v bool) ([]byte, error) {
	if v {
		return append(dst, 1), nil
	}
	return append(dst, 0), nil
}

func (boolCodec) Decode(b []byte) (bool, error) {
	if err := fixed("bool", b, 1); err != nil {
		return false, err
	}
	switch b[0] {
	case 0:
		return false, nil
	case 1:
		return true, nil
	}
	return false, fmt.Errorf("operator: bool codec: byte %d, want 0 or 1", b[0])
}

type jsonCodec[T any] struct{}

func (jsonCodec[T]) Append(dst []byte, v T) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return dst, fmt.Errorf("operator: json codec: encode %v: %v", reflect.TypeFor[T](), err)
	}
	return append(dst, b...), nil
}

func (jsonCodec[T]) Decode(b []byte) (T, error) {
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("operator: json codec: decode %d bytes into %v: %v", len(b), reflect.TypeFor[T](), err)
	}
	return v, nil
}

// SliceCodec returns the codec of slices of T: the number of elements,
// then each element's length and encoding by c (unsigned varints).
func SliceCodec[T any](c Codec[T]) Codec[[]T] { return sliceCodec[T]{c} }

type sliceCodec[T any] struct{ c Codec[T] }

func (s sliceCodec[T]) Append(dst []byte, xs []T) ([]byte, error) {
	dst = binary.AppendUvarint(dst, uint64(len(xs)))
	var elem []byte
	for i, x := range xs {
		var err error
		if elem, err = s.c.Append(elem[:0], x); err != nil {
			return dst, fmt.Errorf("element %d: %w", i, err)
		}
		dst = binary.AppendUvarint(dst, uint64(len(elem)))
		dst = append(dst, elem...)
	}
	return dst, nil
}

func (s sliceCodec[T]) Decode(b []byte) ([]T, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, fmt.Errorf("a slice: malformed element count")
	}
	b = b[k:]
	xs := make([]T, 0, n)
	for i := uint64(0); i < n; i++ {
		l, k := binary.Uvarint(b)
		if k <= 0 || l > uint64(len(b)-k) {
			return nil, fmt.Errorf("a slice: element %d of %d is cut short", i, n)
		}
		x, err := s.c.Decode(b[k : k+int(l)])
		if err != nil {
			return nil, fmt.Errorf("a slice: element %d: %w", i, err)
		}
		xs = append(xs, x)
		b = b[k+int(l):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("a slice: %d bytes after its %d elements", len(b), n)
	}
	return xs, nil
}
