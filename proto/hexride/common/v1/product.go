package commonv1

import "strings"

// The product's one spelling inside hexride (supply index, price tables, the
// trip store) is its key: the enum name without PRODUCT_, lower case
// ("standard", "xl"). Key and ProductOfKey are the only conversions.

const productPrefix = "PRODUCT_"

// Key is the product's key; "" for UNSPECIFIED or unknown values.
func (p Product) Key() string {
	if p == Product_PRODUCT_UNSPECIFIED {
		return ""
	}
	name, ok := Product_name[int32(p)]
	if !ok {
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(name, productPrefix))
}

// ProductOfKey is the product a key names (UNSPECIFIED for unknown keys).
// It accepts the upper-case spelling older trip rows carry.
func ProductOfKey(key string) Product {
	if key == "" {
		return Product_PRODUCT_UNSPECIFIED
	}
	return Product(Product_value[productPrefix+strings.ToUpper(key)])
}
