package bitnet

// Cursor pagination as an iterator. Hand-written runtime.

import (
	"context"
	"iter"
)

// paginate yields every item of every page; fetch gets the cursor to send (nil first) and
// returns the page's items and the next cursor (nil or empty on the last page). An error
// is yielded once, and ends the iteration.
func paginate[T any](ctx context.Context, start *string,
	fetch func(ctx context.Context, cursor *string) ([]T, *string, error)) iter.Seq2[T, error] {
	return func(yield func(T, error) bool) {
		cursor := start
		for {
			items, next, err := fetch(ctx, cursor)
			if err != nil {
				var zero T
				yield(zero, err)
				return
			}
			for _, item := range items {
				if !yield(item, nil) {
					return
				}
			}
			if next == nil || *next == "" || (cursor != nil && *next == *cursor) {
				return
			}
			cursor = next
		}
	}
}
