module example.com/bitnet-tour

go 1.23

require example.com/bitnet v0.0.0

// The generated SDK: bitnet sdk generate --lang go --out sdk
replace example.com/bitnet => ./sdk
