def plot(result, png):
    return "plot: not yet"
