// Every layer of the blended view has loaded.
() => [...document.querySelectorAll('.panel-blended img')].every((i) => i.complete && i.naturalWidth)
